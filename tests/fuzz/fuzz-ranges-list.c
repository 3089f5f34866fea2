/* nbdkit-remap fuzzer: the remap-add list parser
 * (remap_ranges_parse_list, "5,7-9,0x10").
 *
 * Oracles: no crash or overrun; success yields ranges with
 * first <= last, and failure always says why.
 */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"
#include "ranges.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *s = malloc (size + 1);
  struct remap_ranges r = { 0 };
  char why[256];

  if (s == NULL)
    return 0;
  memcpy (s, data, size);
  s[size] = '\0';
  why[0] = '\0';
  if (remap_ranges_parse_list (s, &r, why, sizeof why) == 0) {
    for (size_t i = 0; i < r.len; i++)
      if (r.v[i].first > r.v[i].last)
        fuzz_fail ("range %zu is backwards", i);
    if (r.len == 0)
      fuzz_fail ("parsed an empty list as success");
  }
  else if (why[0] == '\0')
    fuzz_fail ("failed without a reason");
  remap_ranges_free (&r);
  free (s);
  return 0;
}
