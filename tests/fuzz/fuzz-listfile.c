/* nbdkit-remap fuzzer: the remap-add-file reader
 * (remap_ranges_parse_file over fmemopen of the input).
 *
 * Oracles: no crash or overrun; success yields ranges with
 * first <= last; failure always says why.
 */
#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz-common.h"
#include "ranges.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct remap_ranges r = { 0 };
  char why[256];
  FILE *fp;

  if (size == 0)
    return 0;                   /* fmemopen refuses an empty buffer */
  fp = fmemopen ((void *) data, size, "r");
  if (fp == NULL)
    return 0;
  why[0] = '\0';
  if (remap_ranges_parse_file (fp, &r, why, sizeof why) == 0) {
    for (size_t i = 0; i < r.len; i++)
      if (r.v[i].first > r.v[i].last)
        fuzz_fail ("range %zu is backwards", i);
  }
  else if (why[0] == '\0')
    fuzz_fail ("failed without a reason");
  fclose (fp);
  remap_ranges_free (&r);
  return 0;
}
