/* nbdkit-remap: a struct remap_io over an nbdkit_next (the plugin,
 * or the filters below us), so that the core never sees nbdkit.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>

#include <nbdkit-filter.h>

#include "nextio.h"

/* struct remap_io over an nbdkit_next. */
static int
next_pread (void *opaque, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  nbdkit_next *next = opaque;
  return next->pread (next, buf, count, offset, flags, err);
}

static int
next_pwrite (void *opaque, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  nbdkit_next *next = opaque;
  return next->pwrite (next, buf, count, offset, flags, err);
}

static int
next_zero (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
           int *err)
{
  nbdkit_next *next = opaque;
  return next->zero (next, count, offset, flags, err);
}

static int
next_trim (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
           int *err)
{
  nbdkit_next *next = opaque;
  return next->trim (next, count, offset, flags, err);
}

static int
next_cache (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
            int *err)
{
  nbdkit_next *next = opaque;
  return next->cache (next, count, offset, flags, err);
}

static int
next_flush (void *opaque, int *err)
{
  nbdkit_next *next = opaque;
  return next->flush (next, 0, err);
}

static int
next_extent (void *opaque, uint32_t count, uint64_t offset, uint64_t *run,
             bool *zero, int *err)
{
  nbdkit_next *next = opaque;
  struct nbdkit_extents *exts = nbdkit_extents_new (offset, offset + count);
  struct nbdkit_extent e;

  if (exts == NULL) {
    *err = errno;
    return -1;
  }
  if (next->extents (next, count, offset, NBDKIT_FLAG_REQ_ONE, exts,
                     err) == -1) {
    nbdkit_extents_free (exts);
    return -1;
  }
  e = nbdkit_get_extent (exts, 0);
  *run = e.offset + e.length - offset;
  *zero = (e.type & NBDKIT_EXTENT_ZERO) != 0;
  nbdkit_extents_free (exts);
  return 0;
}

int
remap_io_from_next (nbdkit_next *next, struct remap_io *io)
{
  int can_zero, can_trim, can_cache, can_flush, can_fua, can_extents;

  if ((can_zero = next->can_zero (next)) == -1 ||
      (can_trim = next->can_trim (next)) == -1 ||
      (can_cache = next->can_cache (next)) == -1 ||
      (can_flush = next->can_flush (next)) == -1 ||
      (can_fua = next->can_fua (next)) == -1 ||
      (can_extents = next->can_extents (next)) == -1)
    return -1;
  *io = (struct remap_io) {
    .opaque = next,
    .pread = next_pread,
    .pwrite = next_pwrite,
    .zero = can_zero == NBDKIT_ZERO_NATIVE ? next_zero : NULL,
    .trim = can_trim ? next_trim : NULL,
    .cache = can_cache != NBDKIT_CACHE_NONE ? next_cache : NULL,
    .flush = can_flush ? next_flush : NULL,
    .extent = can_extents ? next_extent : NULL,
    .can_fua = can_fua != NBDKIT_FUA_NONE,
  };
  return 0;
}
