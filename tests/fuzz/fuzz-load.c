/* nbdkit-remap fuzzer: finding and choosing the metadata copies in a
 * whole store (remap_metadata_load), as at startup.
 *
 * Input: the first byte picks the mode (bit 0: internal region; bits
 * 1-2: the sector size the caller gives: none, 512, 4096 or 65536;
 * bits 3-4: the spare count it gives: none, 1, 4 or 16); the rest is
 * the store, read through a struct remap_io that fails (EIO) past its
 * end.  Oracles: no crash, leak or overrun, no allocation over the
 * limit run-fuzz.sh gives (-malloc_limit_mb: a load allocates no more
 * than its store holds); a VALID result has a geometry that fits the
 * store (see region_fits in metadata.c), at most entry_capacity
 * entries in order, and its copy reports agree (the chosen generation
 * is the newest valid one).
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"
#include "metadata.h"

struct mem {
  const uint8_t *p;
  uint64_t size;
};

static int
mem_pread (void *opaque, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags, int *err)
{
  struct mem *m = opaque;

  (void) flags;
  if (offset > m->size || count > m->size - offset) {
    *err = EIO;
    return -1;
  }
  memcpy (buf, m->p + offset, count);
  return 0;
}

static int
mem_pwrite (void *opaque, const void *buf, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  (void) opaque; (void) buf; (void) count; (void) offset; (void) flags;
  fuzz_fail ("loading wrote to the store");
  *err = EROFS;
  return -1;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const uint32_t sizes[] = { 0, 512, 4096, 65536 };
  static const uint32_t spares[] = { 0, 1, 4, 16 };
  struct mem m;
  struct remap_io io = { .pread = mem_pread, .pwrite = mem_pwrite };
  struct remap_load_result r;
  bool internal;
  char desc[1024];

  if (size < 1)
    return 0;
  internal = data[0] & 1;
  m.p = data + 1;
  m.size = size - 1;
  io.opaque = &m;
  remap_metadata_load (&io, m.size, internal, sizes[(data[0] >> 1) & 3],
                       spares[(data[0] >> 3) & 3], &r);
  remap_metadata_describe (&r, desc, sizeof desc);
  if (r.found == REMAP_FOUND_VALID) {
    const struct remap_geometry *g = &r.header.geo;
    uint64_t best = 0;
    /* Every size a load uses comes from the region: on a disk it lies
     * inside the store; a spare file may lack copy B (it is rewritten)
     * but holds every spare.
     */
    if (internal ? g->region_offset + g->region_size > m.size
        : g->spare_offset + (uint64_t) g->spare_count * g->sector_size > m.size)
      fuzz_fail ("a geometry past the end of the store was accepted");
    if (r.header.entry_count > g->entry_capacity)
      fuzz_fail ("more entries than the capacity");
    if (g->internal != internal)
      fuzz_fail ("a region of the other mode was accepted");
    for (int i = 0; i < REMAP_COPIES; i++)
      if (r.copy[i].status == REMAP_DECODE_OK &&
          r.copy[i].generation > best)
        best = r.copy[i].generation;
    if (best != r.header.generation)
      fuzz_fail ("chose generation %" PRIu64 " over %" PRIu64,
                 r.header.generation, best);
    for (uint32_t i = 1; i < r.header.entry_count; i++)
      if (r.entries[i].state != REMAP_STATE_RETIRED &&
          r.entries[i].sector <= r.entries[i-1].sector)
        fuzz_fail ("entries out of order");
  }
  else if (r.entries != NULL)
    fuzz_fail ("entries returned without a valid copy");
  free (r.entries);
  return 0;
}
