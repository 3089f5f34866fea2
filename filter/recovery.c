/* nbdkit-remap: recovery from media errors on the origin (see
 * recovery.h).
 *
 * The rules, after drive firmware and the md bad-block log:
 *  - a failed write is retried per sector; a sector that still fails
 *    is moved to a spare: data on the spare first, then the table
 *    entry, then the acknowledgement;
 *  - a failed read is retried per sector; a sector that never reads is
 *    *pending* (we never invent its data), until a write covers it:
 *    then it is rewritten in place and verified (recovered) or moved.
 * Every write here that depends on a sector's state runs under the
 * sector's unit lock (sector.h).
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

unsigned char remap_zero_sector[REMAP_MAX_SECTOR_SIZE];

/* nbdkit waits for requests in flight before it lets us clean up, so
 * a request must stop at the next call, not finish a long recovery
 * against a slow, failing plugin.
 */
bool
remap_give_up (struct remap_device *dev, int *err)
{
  if (remap_device_quitting (dev)) {
    *err = ESHUTDOWN;
    return true;
  }
  return false;
}

int
remap_read_with_retries (struct remap_device *dev, const struct remap_io *io,
                         void *buf, uint32_t len, uint64_t offset, int *err)
{
  for (uint32_t tries = 0; ; tries++) {
    if (io->pread (io->opaque, buf, len, offset, 0, err) == 0)
      return 0;
    if (*err != EIO || tries >= dev->opt.read_retries ||
        remap_give_up (dev, err))
      return -1;
    remap_bump (dev, REMAP_COUNTER_RETRIES, 1);
  }
}

void
remap_note_unreadable (struct remap_device *dev, uint64_t sector)
{
  remap_bump (dev, REMAP_COUNTER_READ_ERRORS, 1);
  if (remap_sector_mark_pending (dev, sector)) {
    remap_verbose ("sector %" PRIu64 " is unreadable: pending", sector);
    remap_health_new_bad_sector (dev, sector);
  }
}

int
remap_move_locked (struct remap_device *dev, const struct remap_io *origin,
                   uint64_t sector, const struct remap_entry *prev,
                   const void *piece, uint32_t piece_len,
                   uint64_t piece_offset, uint32_t flags,
                   enum remap_fill fill, uint64_t *gen, int *err)
{
  const uint64_t sstart = remap_sector_start (dev, sector);
  const uint32_t slen = remap_sector_len (dev, sector);
  const struct remap_entry none = { .sector = sector };
  const bool lost = prev && prev->spare == REMAP_LOST_DATA;
  CLEANUP_FREE unsigned char *data = calloc (1, dev->geo.sector_size);
  bool make_pending = false;
  uint32_t spare;

  if (data == NULL) {
    *err = ENOMEM;
    return -1;
  }
  if (remap_give_up (dev, err))
    return -1;
  /* A pending or lost sector keeps its entry until the new spare holds
   * the data (sector.h); a normal one is reserved.
   */
  if ((prev ? remap_sector_take_spare (dev, sector, &spare, err)
       : remap_sector_reserve (dev, sector, &spare, err)) == -1)
    return -1;
  /* A pending sector got its mark without that wait (as in
   * remap_pending_write_locked).
   */
  if (prev && !lost && piece_len < slen && fill == REMAP_FILL_FROM_ORIGIN)
    remap_windows_drain (dev, REMAP_WINDOW_WRITE);

  /* The whole sector goes to the spare: the bytes around a partial
   * write come from the original sector while it still reads.  Read
   * now, under the exclusion, so they include every write to it that
   * was acknowledged or in flight.  A lost sector's origin is stale.
   */
  if (piece_len < slen && fill == REMAP_FILL_FROM_ORIGIN &&
      (lost ||
       remap_read_with_retries (dev, origin, data, slen, sstart, err) == -1)) {
    if (piece_len == 0) {
      /* Copying on request: nothing to copy, the sector is pending. */
      remap_bump (dev, REMAP_COUNTER_READ_ERRORS, 1);
      if (prev)
        remap_sector_give_back (dev, spare);
      else
        remap_sector_unreserve (dev, sector, spare, true);
      remap_verbose ("sector %" PRIu64 " is unreadable: pending", sector);
      return 0;
    }
    if (!dev->opt.pending_partial_zero) {
      nbdkit_error ("remap: sector %" PRIu64 " cannot be written or read: "
                    "a partial write to it fails and it is now pending "
                    "(remap-pending-partial=zero would fill the rest with "
                    "zeros)", sector);
      *err = EIO;
      make_pending = true;
      goto abandon;
    }
    memset (data, 0, slen);
  }
  memcpy (data + (piece_offset - sstart),
          piece ? piece : remap_zero_sector, piece_len);
  if (remap_write_to_some_spare (dev, sector, data, flags, &spare,
                                 err) == -1)
    goto abandon;

  /* Counters first, so that the metadata write this change triggers
   * saves them too.
   */
  remap_bump (dev, REMAP_COUNTER_REMAPS, 1);
  *gen = remap_sector_remapped (dev, sector, spare, prev ? prev : &none);
  nbdkit_debug ("remap: sector %" PRIu64 " remapped to spare %" PRIu32,
                sector, spare);
  if (!prev)
    remap_health_new_bad_sector (dev, sector);
  remap_health_check_spares (dev);
  return 0;

 abandon:
  if (prev)
    remap_sector_give_back (dev, spare);
  else
    remap_sector_unreserve (dev, sector, spare, make_pending);
  return -1;
}

static int
origin_write (const struct remap_io *origin, const void *piece, uint32_t len,
              uint64_t offset, uint32_t flags, int *err)
{
  flags &= ~REMAP_FLAG_FAST_ZERO;
  if (piece)
    return origin->pwrite (origin->opaque, piece, len, offset, flags, err);
  if (origin->zero)
    return origin->zero (origin->opaque, len, offset, flags, err);
  return origin->pwrite (origin->opaque, remap_zero_sector, len, offset,
                         flags, err);
}

/* remap-verify: true if the origin reads back what was written. */
static bool
origin_kept (struct remap_device *dev, const struct remap_io *origin,
             const void *piece, uint32_t len, uint64_t offset)
{
  CLEANUP_FREE unsigned char *check = malloc (len);
  int err;

  if (check == NULL ||
      origin->pread (origin->opaque, check, len, offset, 0, &err) == -1 ||
      memcmp (check, piece ? piece : remap_zero_sector, len) != 0) {
    remap_verbose ("sector %" PRIu64 " did not keep what was written",
                   offset / dev->geo.sector_size);
    return false;
  }
  return true;
}

int
remap_unit_write (struct remap_device *dev, const struct remap_io *origin,
                  uint64_t sector, const void *piece, uint32_t len,
                  uint64_t offset, uint32_t flags, bool origin_failed,
                  int *err)
{
  struct remap_entry e;
  uint64_t gen = 0;
  int r;

  remap_unit_lock (dev, sector);
  /* A RESERVED entry is never seen here: its mover holds the lock. */
  if (remap_give_up (dev, err))
    r = -1;
  else if (remap_table_lookup (dev->table, sector, &e))
    r = e.state == REMAP_STATE_REMAPPED
      ? remap_spare_write_locked (dev, origin, &e, piece, len, offset, flags,
                                  &gen, err)
      : remap_pending_write_locked (dev, origin, &e, piece, len, offset,
                                    flags, &gen, err);
  else {
    if (!origin_failed) {
      r = origin_write (origin, piece, len, offset, flags, err);
      if (r == 0 && dev->opt.verify &&
          !origin_kept (dev, origin, piece, len, offset)) {
        *err = EIO;
        r = -1;
      }
      origin_failed = r == -1 && *err == EIO;
      if (origin_failed)
        remap_bump (dev, REMAP_COUNTER_WRITE_ERRORS, 1);
    }
    if (origin_failed)
      r = remap_move_locked (dev, origin, sector, NULL, piece, len, offset,
                             flags, REMAP_FILL_FROM_ORIGIN, &gen, err);
  }
  remap_unit_unlock (dev, sector);
  if (r == 0 && gen && remap_sync_wait (dev->sync, gen) == -1) {
    *err = errno;
    return -1;
  }
  return r;
}

int
remap_recover_read (struct remap_device *dev, const struct remap_io *origin,
                    void *buf, uint32_t len, uint64_t offset, int *err)
{
  const uint64_t end = offset + len;
  uint64_t first_bad = 0;
  unsigned nr_bad = 0;

  remap_bump (dev, REMAP_COUNTER_RETRIES, 1);
  while (offset < end) {
    uint64_t sector;
    uint32_t plen = remap_sector_piece (dev, offset, end, &sector);

    if (remap_give_up (dev, err))
      return -1;
    if (remap_read_with_retries (dev, origin, buf, plen, offset, err) == -1) {
      if (*err != EIO)
        return -1;
      remap_note_unreadable (dev, sector);
      if (nr_bad++ == 0)
        first_bad = sector;
    }
    buf = (unsigned char *) buf + plen;
    offset += plen;
  }
  if (nr_bad) {
    nbdkit_error ("remap: %u sector(s) could not be read (first: %" PRIu64
                  "); they are pending until rewritten", nr_bad, first_bad);
    *err = EIO;
    return -1;
  }
  return 0;
}

int
remap_verify_run (struct remap_device *dev, const struct remap_io *origin,
                  const void *buf, uint32_t len, uint64_t offset,
                  uint32_t flags, int *err)
{
  const uint64_t start = offset, end = offset + len;

  while (offset < end) {
    uint64_t sector;
    uint32_t plen = remap_sector_piece (dev, offset, end, &sector);
    const void *piece = buf ? (const unsigned char *) buf + (offset - start)
      : NULL;

    if (remap_give_up (dev, err))
      return -1;
    if (!origin_kept (dev, origin, piece, plen, offset)) {
      remap_bump (dev, REMAP_COUNTER_WRITE_ERRORS, 1);
      if (remap_unit_write (dev, origin, sector, piece, plen, offset, flags,
                            true, err) == -1)
        return -1;
    }
    offset += plen;
  }
  return 0;
}

int
remap_write_per_unit (struct remap_device *dev,
                      const struct remap_io *origin, const void *buf,
                      uint32_t len, uint64_t offset, uint32_t flags,
                      bool retry, int *err)
{
  const uint64_t start = offset, end = offset + len;

  if (retry)
    remap_bump (dev, REMAP_COUNTER_RETRIES, 1);
  while (offset < end) {
    uint64_t sector;
    uint32_t plen = remap_sector_piece (dev, offset, end, &sector);
    const void *piece = buf ? (const unsigned char *) buf + (offset - start)
      : NULL;

    if (remap_unit_write (dev, origin, sector, piece, plen, offset, flags,
                          false, err) == -1)
      return -1;
    offset += plen;
  }
  return 0;
}

int
remap_pending_read (struct remap_device *dev, const struct remap_io *origin,
                    const struct remap_entry *e, void *buf, uint32_t len,
                    uint64_t offset, int *err)
{
  if (e->spare == REMAP_LOST_DATA)
    *err = EIO;
  else if (remap_read_with_retries (dev, origin, buf, len, offset, err) == 0)
    return 0;
  if (*err == EIO) {
    remap_bump (dev, REMAP_COUNTER_READ_ERRORS, 1);
    nbdkit_error ("remap: sector %" PRIu64 " is pending (unreadable) until "
                  "it is rewritten", offset / dev->geo.sector_size);
  }
  return -1;
}

/* A write that covers a pending sector completely is tried in place
 * and read back: if the sector keeps it, the sector has recovered.
 */
int
remap_pending_write_locked (struct remap_device *dev,
                            const struct remap_io *origin,
                            const struct remap_entry *e, const void *piece,
                            uint32_t len, uint64_t offset, uint32_t flags,
                            uint64_t *gen, int *err)
{
  const uint64_t sector = e->sector;
  const uint32_t slen = remap_sector_len (dev, sector);
  const void *data = piece ? piece : remap_zero_sector;

  if (len < slen) {
    /* If the old contents read again, the write becomes a whole-sector
     * one; if not, there is nothing honest to put around the new bytes.
     */
    CLEANUP_FREE unsigned char *whole = malloc (slen);
    const uint64_t sstart = remap_sector_start (dev, sector);

    if (whole == NULL) {
      *err = ENOMEM;
      return -1;
    }
    /* A pending mark is set without waiting for the write windows
     * (sector.h): a write that saw no entry may still be on its way to
     * the origin.  It must be in what the merge reads.
     */
    if (e->spare != REMAP_LOST_DATA)
      remap_windows_drain (dev, REMAP_WINDOW_WRITE);
    if (e->spare != REMAP_LOST_DATA &&
        remap_read_with_retries (dev, origin, whole, slen, sstart,
                                 err) == 0) {
      memcpy (whole + (offset - sstart), data, len);
      return remap_pending_write_locked (dev, origin, e, whole, slen, sstart,
                                         flags, gen, err);
    }
    if (!dev->opt.pending_partial_zero) {
      nbdkit_error ("remap: sector %" PRIu64 " is pending (its old contents "
                    "are unreadable), so a partial write to it fails; "
                    "write the whole sector, or use remap-pending-partial="
                    "zero", sector);
      *err = EIO;
      return -1;
    }
    return remap_move_locked (dev, origin, sector, e, piece, len, offset,
                              flags, REMAP_FILL_ZEROS, gen, err);
  }

  if (origin->pwrite (origin->opaque, data, slen, offset,
                      flags & REMAP_FLAG_FUA, err) == 0 &&
      origin_kept (dev, origin, data, slen, offset)) {
    *gen = remap_sector_recovered (dev, sector);
    return 0;
  }
  remap_bump (dev, REMAP_COUNTER_WRITE_ERRORS, 1);
  return remap_move_locked (dev, origin, sector, e, piece, len, offset, flags,
                            REMAP_FILL_ZEROS, gen, err);
}
