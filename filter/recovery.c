/* nbdkit-remap: recovery from media errors (see recovery.h).
 *
 * The rules, after drive firmware and the md bad-block log:
 *  - a failed write is retried per sector; a sector that still fails
 *    is moved to a spare: data on the spare first, then the table
 *    entry, then the acknowledgement;
 *  - a failed read is retried per sector; a sector that never reads is
 *    *pending* (we never invent its data), until a write covers it:
 *    then it is rewritten in place and verified (recovered) or moved;
 *  - a spare that fails is retired for good and its sector moved on.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "recovery.h"

/* How many spares one sector may burn through before we give up. */
#define MAX_SPARE_TRIES 8

unsigned char remap_zero_sector[REMAP_MAX_SECTOR_SIZE];

/* Every loop here that goes to the plugin again asks first whether
 * the server is quitting: nbdkit waits for requests in flight before
 * it lets us clean up, so a request must stop at the next call, not
 * finish a long recovery against a slow, failing plugin.
 */
static bool
give_up (struct remap_device *dev, int *err)
{
  if (remap_device_quitting (dev)) {
    *err = ESHUTDOWN;
    return true;
  }
  return false;
}

/* The part of [offset, end) that lies in offset's sector. */
static uint32_t
sector_piece (const struct remap_device *dev, uint64_t offset, uint64_t end,
              uint64_t *sector)
{
  uint64_t sector_end;

  *sector = offset / dev->geo.sector_size;
  sector_end = remap_sector_start (dev, *sector) + dev->geo.sector_size;
  return (sector_end < end ? sector_end : end) - offset;
}

/* Reads with up to opt.read_retries extra tries after EIO. */
static int
read_with_retries (struct remap_device *dev, const struct remap_io *io,
                   void *buf, uint32_t len, uint64_t offset, int *err)
{
  for (uint32_t tries = 0; ; tries++) {
    if (io->pread (io->opaque, buf, len, offset, 0, err) == 0)
      return 0;
    if (*err != EIO || tries >= dev->opt.read_retries || give_up (dev, err))
      return -1;
    remap_bump (dev, REMAP_COUNTER_RETRIES, 1);
  }
}

/* Pending entries share the table's slot with the remaps, so they are
 * capped at what is left over once every spare is in use.
 */
static void
add_pending_locked (struct remap_device *dev, uint64_t sector)
{
  struct remap_entry e = { .sector = sector, .spare = REMAP_NO_SPARE,
                           .state = REMAP_STATE_PENDING };
  uint64_t limit = dev->geo.entry_capacity - dev->geo.spare_count;

  if (__atomic_load_n (&dev->pending_now, __ATOMIC_RELAXED) >= limit) {
    if (!dev->pending_full_logged)
      nbdkit_error ("remap: %" PRIu64 " sectors are pending, as many as the "
                    "table holds: sector %" PRIu64 " and later unreadable "
                    "sectors are not recorded (reads of them still fail)",
                    limit, sector);
    dev->pending_full_logged = true;
    return;
  }
  if (remap_table_insert (dev->table, &e) == 0) {
    __atomic_fetch_add (&dev->pending_now, 1, __ATOMIC_RELAXED);
    remap_sync_mark_changed (dev->sync);
  }
}

/* Records an unreadable sector.  Not waited for: nothing depends on a
 * pending entry being durable, it only says "this one is bad".
 */
static void
mark_pending (struct remap_device *dev, uint64_t sector)
{
  struct remap_entry e;
  bool added = false;

  pthread_mutex_lock (&dev->remap_lock);
  if (!remap_table_lookup (dev->table, sector, &e)) {
    add_pending_locked (dev, sector);
    added = true;
  }
  pthread_mutex_unlock (&dev->remap_lock);
  if (added) {
    remap_verbose ("sector %" PRIu64 " is unreadable: pending", sector);
    remap_health_new_bad_sector (dev, sector);
  }
}

int
remap_device_mark_pending (struct remap_device *dev, uint64_t first,
                           uint64_t last, int *err)
{
  if (last >= dev->geo.data_sectors || first > last) {
    *err = ERANGE;
    return -1;
  }
  for (uint64_t s = first; s <= last; s++)
    mark_pending (dev, s);
  return 0;
}

int
remap_device_mark_pending_bytes (struct remap_device *dev,
                                 uint64_t first_byte, uint64_t last_byte,
                                 uint64_t *sectors, int *err)
{
  const uint64_t first = first_byte / dev->geo.sector_size;
  uint64_t last = last_byte / dev->geo.sector_size;

  if (first >= dev->geo.data_sectors)
    return 1;
  if (last >= dev->geo.data_sectors)
    last = dev->geo.data_sectors - 1;
  if (remap_device_mark_pending (dev, first, last, err) == -1)
    return -1;
  *sectors = last - first + 1;
  return 0;
}

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

  __atomic_store_n (&dev->store_dirty, true, __ATOMIC_RELEASE);
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

/* Retires a spare; caller holds remap_lock. */
static void
retire_locked (struct remap_device *dev, uint32_t spare, uint64_t sector)
{
  remap_spares_retire (dev->spares, spare);
  remap_sync_mark_changed (dev->sync);
  remap_verbose ("spare %" PRIu32 " (sector %" PRIu64 ") failed: retired",
                 spare, sector);
}

/* Takes a spare; caller holds remap_lock. */
static int
alloc_spare_locked (struct remap_device *dev, uint64_t sector,
                    uint32_t *spare, int *err)
{
  if (remap_spares_alloc (dev->spares, spare) == -1) {
    remap_health_exhausted (dev, sector);
    *err = ENOSPC;
    return -1;
  }
  return 0;
}

/* Writes a whole sector to fresh spares until one takes it.  *spare
 * holds the first spare to try (already taken) and returns the one
 * that worked; the RESERVED entry follows it.
 */
static int
write_to_some_spare (struct remap_device *dev, uint64_t sector,
                     const unsigned char *data, uint32_t *spare, int *err)
{
  for (int tries = 0; ; tries++) {
    struct remap_entry e = { .sector = sector, .state = REMAP_STATE_RESERVED };

    if (write_spare_raw (dev, *spare, sector, data, dev->geo.sector_size,
                         remap_sector_start (dev, sector), 0, err) == 0)
      return 0;
    nbdkit_error ("remap: writing spare %" PRIu32 " for sector %" PRIu64
                  " failed: %s", *spare, sector, strerror (*err));
    if (*err != EIO || tries + 1 >= MAX_SPARE_TRIES || give_up (dev, err))
      return -1;
    pthread_mutex_lock (&dev->remap_lock);
    retire_locked (dev, *spare, sector);
    if (alloc_spare_locked (dev, sector, spare, err) == -1) {
      pthread_mutex_unlock (&dev->remap_lock);
      return -1;
    }
    e.spare = *spare;
    remap_table_insert (dev->table, &e);
    pthread_mutex_unlock (&dev->remap_lock);
  }
}

int
remap_recover_write (struct remap_device *dev, const struct remap_io *origin,
                     uint64_t sector, const void *piece, uint32_t piece_len,
                     uint64_t piece_offset, uint32_t flags,
                     enum remap_fill fill, bool wait, int *err)
{
  const uint64_t sstart = remap_sector_start (dev, sector);
  const uint32_t slen = remap_sector_len (dev, sector);
  CLEANUP_FREE unsigned char *data = NULL;
  struct remap_entry e, prev;
  bool had_prev = false, make_pending = false;
  uint64_t gen;

  if (give_up (dev, err))
    return -1;
  pthread_mutex_lock (&dev->remap_lock);
  for (;;) {
    if (dev->stopping) {
      pthread_mutex_unlock (&dev->remap_lock);
      *err = ESHUTDOWN;
      return -1;
    }
    had_prev = remap_table_lookup (dev->table, sector, &prev);
    if (!had_prev || prev.state == REMAP_STATE_PENDING)
      break;
    if (prev.state == REMAP_STATE_REMAPPED) {
      int r;
      /* Someone else moved it first: one sector, one spare. */
      pthread_mutex_unlock (&dev->remap_lock);
      pthread_rwlock_rdlock (&dev->unmap_lock);
      r = remap_spare_write (dev, origin, &prev, piece, piece_len,
                             piece_offset, flags, err);
      pthread_rwlock_unlock (&dev->unmap_lock);
      if (r == -1)
        return -1;
      if (wait &&
          remap_sync_wait (dev->sync, remap_sync_current (dev->sync)) == -1) {
        *err = errno;
        return -1;
      }
      return 0;
    }
    pthread_cond_wait (&dev->remap_cond, &dev->remap_lock);
  }
  if (alloc_spare_locked (dev, sector, &e.spare, err) == -1) {
    pthread_mutex_unlock (&dev->remap_lock);
    return -1;
  }
  e.sector = sector;
  e.state = REMAP_STATE_RESERVED;
  if (remap_table_insert (dev->table, &e) == -1) {
    remap_spares_release (dev->spares, e.spare);
    pthread_mutex_unlock (&dev->remap_lock);
    *err = ENOMEM;
    return -1;
  }
  pthread_mutex_unlock (&dev->remap_lock);

  /* The whole sector goes to the spare: the bytes around a partial
   * write come from the original sector while it still reads.
   */
  data = calloc (1, dev->geo.sector_size);
  if (data == NULL) {
    *err = ENOMEM;
    goto abandon;
  }
  if (piece_len < slen && fill == REMAP_FILL_FROM_ORIGIN &&
      (had_prev ||
       read_with_retries (dev, origin, data, slen, sstart, err) == -1)) {
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
  if (write_to_some_spare (dev, sector, data, &e.spare, err) == -1)
    goto abandon;

  /* Counters first, so that the metadata write this change triggers
   * saves them too.
   */
  remap_bump (dev, REMAP_COUNTER_REMAPS, 1);
  pthread_mutex_lock (&dev->remap_lock);
  e.state = REMAP_STATE_REMAPPED;
  remap_table_insert (dev->table, &e); /* replaces: cannot fail */
  if (had_prev)
    __atomic_fetch_sub (&dev->pending_now, 1, __ATOMIC_RELAXED);
  gen = remap_sync_mark_changed (dev->sync);
  pthread_cond_broadcast (&dev->remap_cond);
  pthread_mutex_unlock (&dev->remap_lock);

  nbdkit_debug ("remap: sector %" PRIu64 " remapped to spare %" PRIu32,
                sector, e.spare);
  if (!had_prev)
    remap_health_new_bad_sector (dev, sector);
  remap_health_check_spares (dev);
  if (wait && remap_sync_wait (dev->sync, gen) == -1) {
    *err = errno;
    return -1;
  }
  return 0;

 abandon:
  pthread_mutex_lock (&dev->remap_lock);
  remap_spares_release (dev->spares, e.spare);
  if (had_prev)
    remap_table_insert (dev->table, &prev);   /* still pending */
  else {
    remap_table_remove (dev->table, sector);
    if (make_pending)
      add_pending_locked (dev, sector);
  }
  pthread_cond_broadcast (&dev->remap_cond);
  pthread_mutex_unlock (&dev->remap_lock);
  return -1;
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
    uint32_t plen = sector_piece (dev, offset, end, &sector);

    if (give_up (dev, err))
      return -1;
    if (read_with_retries (dev, origin, buf, plen, offset, err) == -1) {
      if (*err != EIO)
        return -1;
      remap_bump (dev, REMAP_COUNTER_READ_ERRORS, 1);
      mark_pending (dev, sector);
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

/* Reads back one span the origin says it wrote; remaps each sector
 * whose bytes differ or do not read.
 */
int
remap_verify_run (struct remap_device *dev, const struct remap_io *origin,
                  const void *buf, uint32_t len, uint64_t offset,
                  uint32_t flags, int *err)
{
  const uint32_t ss = dev->geo.sector_size;
  const uint64_t start = offset, end = offset + len;
  CLEANUP_FREE unsigned char *check = malloc (ss);

  if (check == NULL) {
    *err = ENOMEM;
    return -1;
  }
  while (offset < end) {
    uint64_t sector;
    uint32_t plen = sector_piece (dev, offset, end, &sector);
    const void *piece = buf ? (const unsigned char *) buf + (offset - start)
      : NULL;

    if (give_up (dev, err))
      return -1;
    if (origin->pread (origin->opaque, check, plen, offset, 0, err) == -1 ||
        memcmp (check, piece ? piece : remap_zero_sector, plen) != 0) {
      remap_verbose ("sector %" PRIu64 " did not keep what was written",
                     sector);
      remap_bump (dev, REMAP_COUNTER_WRITE_ERRORS, 1);
      if (remap_recover_write (dev, origin, sector, piece, plen, offset,
                               flags, REMAP_FILL_FROM_ORIGIN, true,
                               err) == -1)
        return -1;
    }
    offset += plen;
  }
  return 0;
}

int
remap_recover_write_run (struct remap_device *dev,
                         const struct remap_io *origin, const void *buf,
                         uint32_t len, uint64_t offset, uint32_t flags,
                         int *err)
{
  const uint64_t start = offset, end = offset + len;
  const uint32_t origin_flags = flags & ~REMAP_FLAG_FAST_ZERO;

  remap_bump (dev, REMAP_COUNTER_RETRIES, 1);
  while (offset < end) {
    uint64_t sector;
    uint32_t plen = sector_piece (dev, offset, end, &sector);
    const void *piece = buf ? (const unsigned char *) buf + (offset - start)
      : NULL;
    int r;

    if (give_up (dev, err))
      return -1;
    if (piece)
      r = origin->pwrite (origin->opaque, piece, plen, offset,
                          origin_flags, err);
    else if (origin->zero)
      r = origin->zero (origin->opaque, plen, offset, origin_flags, err);
    else
      r = origin->pwrite (origin->opaque, remap_zero_sector, plen, offset,
                          origin_flags, err);
    if (r == 0 && dev->opt.verify)
      r = remap_verify_run (dev, origin, piece, plen, offset, flags, err);
    else if (r == -1) {
      if (*err != EIO)
        return -1;
      remap_bump (dev, REMAP_COUNTER_WRITE_ERRORS, 1);
      r = remap_recover_write (dev, origin, sector, piece, plen, offset,
                               flags, REMAP_FILL_FROM_ORIGIN, true, err);
    }
    if (r == -1)
      return -1;
    offset += plen;
  }
  return 0;
}

int
remap_spare_read (struct remap_device *dev, const struct remap_entry *e,
                  void *buf, uint32_t len, uint64_t offset, int *err)
{
  struct remap_entry now;

  if (read_with_retries (dev, dev->store, buf, len,
                         remap_spare_where (dev, e, offset), err) == 0)
    return 0;
  if (*err != EIO)
    return -1;

  /* The spare lost the sector's data: retire it, and the sector is
   * pending like any other unreadable one.
   */
  remap_bump (dev, REMAP_COUNTER_READ_ERRORS, 1);
  pthread_mutex_lock (&dev->remap_lock);
  if (remap_table_lookup (dev->table, e->sector, &now) &&
      now.state == REMAP_STATE_REMAPPED && now.spare == e->spare) {
    /* The entry stays (no table growth, so no cap), marked so that
     * the stale original is never served in its place.
     */
    struct remap_entry lost = { .sector = e->sector,
                                .spare = REMAP_LOST_DATA,
                                .state = REMAP_STATE_PENDING };
    retire_locked (dev, e->spare, e->sector);
    remap_table_insert (dev->table, &lost);
    __atomic_fetch_add (&dev->pending_now, 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock (&dev->remap_lock);
  nbdkit_error ("remap: spare %" PRIu32 " of sector %" PRIu64 " cannot be "
                "read: the spare is retired and the sector is pending",
                e->spare, e->sector);
  *err = EIO;
  return -1;
}

/* The spare of a remapped sector failed a write: move the sector to
 * another spare.
 */
static int
relocate (struct remap_device *dev, const struct remap_io *origin,
          const struct remap_entry *e, const void *piece, uint32_t len,
          uint64_t offset, uint32_t flags, int *err)
{
  const uint64_t sstart = remap_sector_start (dev, e->sector);
  const uint32_t slen = remap_sector_len (dev, e->sector);
  CLEANUP_FREE unsigned char *data = calloc (1, dev->geo.sector_size);
  struct remap_entry now;
  uint32_t spare;
  uint64_t gen;

  if (data == NULL) {
    *err = ENOMEM;
    return -1;
  }
  pthread_mutex_lock (&dev->relocate_lock);
  if (!remap_table_lookup (dev->table, e->sector, &now) ||
      now.state != REMAP_STATE_REMAPPED) {
    pthread_mutex_unlock (&dev->relocate_lock);
    return remap_pending_write (dev, origin, e->sector, piece, len, offset,
                                flags, err);
  }
  if (now.spare != e->spare) {
    /* Another writer moved it while we waited. */
    pthread_mutex_unlock (&dev->relocate_lock);
    return remap_spare_write (dev, origin, &now, piece, len, offset, flags,
                              err);
  }
  if (len < slen &&
      read_with_retries (dev, dev->store, data, slen,
                         remap_spare_where (dev, &now, sstart), err) == -1) {
    int r;
    pthread_mutex_unlock (&dev->relocate_lock);
    /* Its data is gone with the spare: the sector is pending. */
    r = remap_spare_read (dev, &now, data, slen, sstart, err);
    if (r == 0)
      return remap_spare_write (dev, origin, &now, piece, len, offset,
                                flags, err);
    return remap_pending_write (dev, origin, e->sector, piece, len, offset,
                                flags, err);
  }
  memcpy (data + (offset - sstart), piece ? piece : remap_zero_sector, len);

  pthread_mutex_lock (&dev->remap_lock);
  if (alloc_spare_locked (dev, e->sector, &spare, err) == -1) {
    pthread_mutex_unlock (&dev->remap_lock);
    pthread_mutex_unlock (&dev->relocate_lock);
    return -1;
  }
  pthread_mutex_unlock (&dev->remap_lock);
  if (write_to_some_spare (dev, e->sector, data, &spare, err) == -1) {
    pthread_mutex_lock (&dev->remap_lock);
    remap_spares_release (dev->spares, spare);
    pthread_mutex_unlock (&dev->remap_lock);
    pthread_mutex_unlock (&dev->relocate_lock);
    return -1;
  }
  pthread_mutex_lock (&dev->remap_lock);
  now.spare = spare;
  remap_table_insert (dev->table, &now);
  retire_locked (dev, e->spare, e->sector);
  gen = remap_sync_mark_changed (dev->sync);
  pthread_mutex_unlock (&dev->remap_lock);
  pthread_mutex_unlock (&dev->relocate_lock);
  nbdkit_debug ("remap: sector %" PRIu64 " moved from failed spare %" PRIu32
                " to spare %" PRIu32, e->sector, e->spare, spare);
  remap_health_check_spares (dev);
  if (remap_sync_wait (dev->sync, gen) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

int
remap_spare_write (struct remap_device *dev, const struct remap_io *origin,
                   const struct remap_entry *e, const void *buf,
                   uint32_t len, uint64_t offset, uint32_t flags, int *err)
{
  if (write_spare_raw (dev, e->spare, e->sector, buf, len, offset, flags,
                       err) == 0)
    return 0;
  if (*err != EIO)
    return -1;
  return relocate (dev, origin, e, buf, len, offset, flags, err);
}

/* True if the sector's data went with a failed spare. */
static bool
data_lost (struct remap_device *dev, uint64_t sector)
{
  struct remap_entry e;

  return remap_table_lookup (dev->table, sector, &e) &&
    e.state == REMAP_STATE_PENDING && e.spare == REMAP_LOST_DATA;
}

int
remap_pending_read (struct remap_device *dev, const struct remap_io *origin,
                    void *buf, uint32_t len, uint64_t offset, int *err)
{
  if (data_lost (dev, offset / dev->geo.sector_size))
    *err = EIO;
  else if (read_with_retries (dev, origin, buf, len, offset, err) == 0)
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
remap_pending_write (struct remap_device *dev, const struct remap_io *origin,
                     uint64_t sector, const void *piece, uint32_t len,
                     uint64_t offset, uint32_t flags, int *err)
{
  const uint32_t slen = remap_sector_len (dev, sector);
  const void *data = piece ? piece : remap_zero_sector;
  CLEANUP_FREE unsigned char *check = NULL;
  struct remap_entry e;

  check = malloc (slen);
  if (check == NULL) {
    *err = ENOMEM;
    return -1;
  }
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
    if (!data_lost (dev, sector) &&
        read_with_retries (dev, origin, whole, slen, sstart, err) == 0) {
      memcpy (whole + (offset - sstart), data, len);
      return remap_pending_write (dev, origin, sector, whole, slen, sstart,
                                  flags, err);
    }
    if (!dev->opt.pending_partial_zero) {
      nbdkit_error ("remap: sector %" PRIu64 " is pending (its old contents "
                    "are unreadable), so a partial write to it fails; "
                    "write the whole sector, or use remap-pending-partial="
                    "zero", sector);
      *err = EIO;
      return -1;
    }
    return remap_recover_write (dev, origin, sector, piece, len, offset,
                                flags, REMAP_FILL_ZEROS, true, err);
  }

  if (origin->pwrite (origin->opaque, data, slen, offset,
                      flags & REMAP_FLAG_FUA, err) == 0 &&
      origin->pread (origin->opaque, check, slen, offset, 0, err) == 0 &&
      memcmp (check, data, slen) == 0) {
    bool cleared = false;
    pthread_mutex_lock (&dev->remap_lock);
    if (remap_table_lookup (dev->table, sector, &e) &&
        e.state == REMAP_STATE_PENDING) {
      remap_table_remove (dev->table, sector);
      __atomic_fetch_sub (&dev->pending_now, 1, __ATOMIC_RELAXED);
      remap_bump (dev, REMAP_COUNTER_RECOVERED, 1);
      remap_sync_mark_changed (dev->sync);
      cleared = true;
    }
    pthread_mutex_unlock (&dev->remap_lock);
    if (cleared) {
      remap_verbose ("pending sector %" PRIu64 " rewrote and verified: "
                     "recovered", sector);
    }
    return 0;
  }
  remap_bump (dev, REMAP_COUNTER_WRITE_ERRORS, 1);
  return remap_recover_write (dev, origin, sector, piece, len, offset, flags,
                              REMAP_FILL_ZEROS, true, err);
}

int
remap_device_add (struct remap_device *dev, const struct remap_io *origin,
                  uint64_t first, uint64_t last, int *err)
{
  CLEANUP_FREE unsigned char *data = malloc (dev->geo.sector_size);

  if (data == NULL) {
    *err = ENOMEM;
    return -1;
  }
  if (last >= dev->geo.data_sectors || first > last) {
    *err = ERANGE;
    return -1;
  }
  for (uint64_t s = first; s <= last; s++) {
    uint32_t slen = remap_sector_len (dev, s);
    struct remap_entry e;

    if (remap_table_lookup (dev->table, s, &e) &&
        e.state == REMAP_STATE_REMAPPED)
      continue;
    if (read_with_retries (dev, origin, data, slen,
                           remap_sector_start (dev, s), err) == -1) {
      if (*err != EIO)
        return -1;
      remap_bump (dev, REMAP_COUNTER_READ_ERRORS, 1);
      mark_pending (dev, s);
      continue;
    }
    if (remap_recover_write (dev, origin, s, data, slen,
                             remap_sector_start (dev, s), 0,
                             REMAP_FILL_ZEROS, false, err) == -1)
      return -1;
    remap_verbose ("sector %" PRIu64 " remapped on request", s);
  }
  return 0;
}

int
remap_device_unmap (struct remap_device *dev, const struct remap_io *origin,
                    uint64_t sector, int *err)
{
  const uint64_t sstart = remap_sector_start (dev, sector);
  const uint32_t slen = remap_sector_len (dev, sector);
  CLEANUP_FREE unsigned char *data = malloc (slen);
  CLEANUP_FREE unsigned char *check = malloc (slen);
  struct remap_entry e;
  uint64_t gen;

  if (data == NULL || check == NULL) {
    *err = ENOMEM;
    return -1;
  }
  pthread_rwlock_wrlock (&dev->unmap_lock);
  if (!remap_table_lookup (dev->table, sector, &e) ||
      e.state != REMAP_STATE_REMAPPED) {
    pthread_rwlock_unlock (&dev->unmap_lock);
    *err = ENOENT;
    return -1;
  }
  if (dev->store->pread (dev->store->opaque, data, slen,
                         remap_spare_where (dev, &e, sstart), 0, err) == -1 ||
      origin->pwrite (origin->opaque, data, slen, sstart, 0, err) == -1 ||
      remap_io_flush (origin, err) == -1 ||
      origin->pread (origin->opaque, check, slen, sstart, 0, err) == -1 ||
      memcmp (data, check, slen) != 0) {
    pthread_rwlock_unlock (&dev->unmap_lock);
    remap_verbose ("sector %" PRIu64 " does not keep its data yet: "
                   "stays remapped", sector);
    *err = EIO;
    return -1;
  }
  pthread_mutex_lock (&dev->remap_lock);
  remap_table_remove (dev->table, sector);
  gen = remap_sync_mark_changed (dev->sync);
  pthread_mutex_unlock (&dev->remap_lock);
  pthread_rwlock_unlock (&dev->unmap_lock);

  /* The spare goes back to the pool only once no saved table can point
   * at it any more: otherwise a crash could show this sector another
   * sector's data.
   */
  if (remap_sync_wait (dev->sync, gen) == -1) {
    *err = errno;
    return -1;
  }
  pthread_mutex_lock (&dev->remap_lock);
  remap_spares_release (dev->spares, e.spare);
  pthread_mutex_unlock (&dev->remap_lock);
  remap_verbose ("sector %" PRIu64 " unmapped from spare %" PRIu32,
                 sector, e.spare);
  return 0;
}
