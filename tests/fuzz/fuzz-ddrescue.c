/* nbdkit-remap fuzzer: the GNU ddrescue mapfile reader
 * (remap_ddrescue_parse over fmemopen of the input).
 *
 * The first input byte picks the sector size (1, as the filter uses
 * to keep byte ranges, 512, 4096 or 65536); the rest is the mapfile.
 * Oracles: no crash or overrun; success yields ranges with
 * first <= last that lie within the areas' bytes; failure says why.
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
  static const uint32_t sizes[] = { 1, 512, 4096, 65536 };
  struct remap_ranges r = { 0 };
  uint32_t ss;
  char why[256];
  FILE *fp;

  if (size < 2)
    return 0;
  ss = sizes[data[0] & 3];
  fp = fmemopen ((void *) (data + 1), size - 1, "r");
  if (fp == NULL)
    return 0;
  why[0] = '\0';
  if (remap_ddrescue_parse (fp, ss, &r, why, sizeof why) == 0) {
    for (size_t i = 0; i < r.len; i++) {
      if (r.v[i].first > r.v[i].last)
        fuzz_fail ("range %zu is backwards", i);
      if (r.v[i].last > UINT64_MAX / ss)
        fuzz_fail ("range %zu ends past the byte space", i);
    }
  }
  else if (why[0] == '\0')
    fuzz_fail ("failed without a reason");
  fclose (fp);
  remap_ranges_free (&r);
  return 0;
}
