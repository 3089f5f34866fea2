/* nbdkit-remap: I/O on the spares (see recovery.h).
 *
 * A spare that fails is retired for good.  A write it failed moves the
 * sector to another spare; if that is impossible the sector keeps the
 * spare it has (its last good data) and the write fails.  A read it
 * failed makes the sector lost: its data went with the spare.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "recovery.h"
#include "sector.h"

/* How many spares one sector may burn through before we give up. */
#define MAX_SPARE_TRIES 8

/* Writes to a spare, and reads it back when remap-verify is on.  A
 * mismatch is reported as EIO: the spare is as bad as one that fails.
 */
static int
write_spare_raw (struct remap_device *dev, uint32_t spare, uint64_t sector,
                 const void *buf, uint32_t len, uint64_t offset,
                 uint32_t flags, int *err)
{
  const struct remap_io *store = dev->store;
  const struct remap_entry e = { .sector = sector, .spare = spare };
  uint64_t where = remap_spare_where (dev, &e, offset);
  uint32_t store_flags = store->can_fua ? flags & REMAP_FLAG_FUA : 0;
  int r;

  if (remap_debug_selftest_bug == 5) __atomic_store_n (&dev->store_dirty, true, __ATOMIC_RELEASE);
  if (buf == NULL && store->zero)
    r = store->zero (store->opaque, len, where,
                     store_flags | (flags & REMAP_FLAG_FAST_ZERO), err);
  else if (buf == NULL && (flags & REMAP_FLAG_FAST_ZERO)) {
    *err = ENOTSUP;
    return -1;
  }
  else
    r = store->pwrite (store->opaque, buf ? buf : remap_zero_sector, len,
                       where, store_flags, err);
  /* Dirty once the write is done, not before: a store flush that
   * began before it lands must not clear the mark (datapath.c).
   */
  if (r == 0 && remap_debug_selftest_bug != 5)
    __atomic_store_n (&dev->store_dirty, true, __ATOMIC_RELEASE);
  if (r == 0 && (flags & REMAP_FLAG_FUA) && !store->can_fua)
    r = remap_io_flush (store, err);
  if (r == 0 && dev->opt.verify) {
    CLEANUP_FREE unsigned char *check = malloc (len);
    if (check == NULL) {
      *err = ENOMEM;
      return -1;
    }
    if (store->pread (store->opaque, check, len, where, 0, err) == -1)
      return -1;
    if (memcmp (check, buf ? buf : remap_zero_sector, len) != 0) {
      remap_verbose ("spare %" PRIu32 " did not keep what was written",
                     spare);
      *err = EIO;
      return -1;
    }
  }
  return r;
}

int
remap_write_to_some_spare (struct remap_device *dev, uint64_t sector,
                           const unsigned char *data, uint32_t flags,
                           uint32_t *spare, int *err)
{
  for (int tries = 0; ; tries++) {
    if (write_spare_raw (dev, *spare, sector, data, dev->geo.sector_size,
                         remap_sector_start (dev, sector),
                         flags & REMAP_FLAG_FUA, err) == 0)
      return 0;
    nbdkit_error ("remap: writing spare %" PRIu32 " for sector %" PRIu64
                  " failed: %s", *spare, sector, strerror (*err));
    if (*err != EIO)
      return -1;
    remap_spare_retired (dev, *spare, sector);
    *spare = REMAP_NO_SPARE;
    if (tries + 1 >= MAX_SPARE_TRIES || remap_give_up (dev, err) ||
        remap_sector_take_spare (dev, sector, spare, err) == -1)
      return -1;
  }
}

int
remap_spare_read (struct remap_device *dev, const struct remap_entry *e,
                  void *buf, uint32_t len, uint64_t offset, int *err)
{
  if (remap_read_with_retries (dev, dev->store, buf, len,
                               remap_spare_where (dev, e, offset), err) == 0)
    return 0;
  if (*err != EIO)
    return -1;
  remap_bump (dev, REMAP_COUNTER_READ_ERRORS, 1);
  remap_sector_lost (dev, e);
  nbdkit_error ("remap: spare %" PRIu32 " of sector %" PRIu64 " cannot be "
                "read: the spare is retired and the sector is pending",
                e->spare, e->sector);
  *err = EIO;
  return -1;
}

/* The spare of a remapped sector failed a write: move the sector to
 * another spare, with the unit lock held.
 */
static int
relocate_locked (struct remap_device *dev, const struct remap_io *origin,
                 const struct remap_entry *e, const void *piece,
                 uint32_t len, uint64_t offset, uint32_t flags,
                 uint64_t *gen, int *err)
{
  const uint64_t sstart = remap_sector_start (dev, e->sector);
  const uint32_t slen = remap_sector_len (dev, e->sector);
  CLEANUP_FREE unsigned char *data = calloc (1, dev->geo.sector_size);
  uint32_t spare;

  if (data == NULL) {
    *err = ENOMEM;
    return -1;
  }
  if (len < slen &&
      remap_spare_read (dev, e, data, slen, sstart, err) == -1) {
    struct remap_entry lost;
    /* Its data is gone with the spare: the sector is lost now, and
     * the write is one to a lost sector.
     */
    if (*err != EIO ||
        !remap_table_lookup (dev->table, e->sector, &lost) ||
        lost.state != REMAP_STATE_PENDING)
      return -1;
    return remap_pending_write_locked (dev, origin, &lost, piece, len,
                                       offset, flags, gen, err);
  }
  memcpy (data + (offset - sstart), piece ? piece : remap_zero_sector, len);

  if (remap_sector_take_spare (dev, e->sector, &spare, err) == -1)
    return -1;
  if (remap_write_to_some_spare (dev, e->sector, data, flags, &spare,
                                 err) == -1) {
    remap_sector_give_back (dev, spare);
    if (remap_debug_selftest_bug == 1) remap_table_remove (dev->table, e->sector);
    nbdkit_error ("remap: sector %" PRIu64 " could not be moved off failed "
                  "spare %" PRIu32 ": the write fails and the sector keeps "
                  "its last data", e->sector, e->spare);
    return -1;
  }
  *gen = remap_sector_remapped (dev, e->sector, spare, e);
  nbdkit_debug ("remap: sector %" PRIu64 " moved from failed spare %" PRIu32
                " to spare %" PRIu32, e->sector, e->spare, spare);
  remap_verbose ("spare %" PRIu32 " (sector %" PRIu64 ") failed: retired",
                 e->spare, e->sector);
  remap_health_check_spares (dev);
  return 0;
}

int
remap_spare_write_locked (struct remap_device *dev,
                          const struct remap_io *origin,
                          const struct remap_entry *e, const void *buf,
                          uint32_t len, uint64_t offset, uint32_t flags,
                          uint64_t *gen, int *err)
{
  if (write_spare_raw (dev, e->spare, e->sector, buf, len, offset, flags,
                       err) == 0)
    return 0;
  if (*err != EIO)
    return -1;
  return relocate_locked (dev, origin, e, buf, len, offset, flags, gen, err);
}
