/* nbdkit-remap: the data path (see device.h).
 *
 * Fast path: if the summary bitmap says no entry can lie in the
 * request, it goes to the origin as one call and nothing else
 * happens.  Everything else walks the request in spans.
 *
 * Creating a remap follows dm-bbr and the md bad-block log: data
 * first, then metadata, then the acknowledgement.  The entry is
 * RESERVED (I/O still goes to the original sector) until the spare
 * holds the whole sector, then REMAPPED, and the write returns only
 * when the table that holds it is durable.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "device.h"

extern int remap_debug_verbose;

static unsigned char zero_sector[REMAP_MAX_SECTOR_SIZE];

static void
bump (struct remap_device *dev, enum remap_counter c, uint64_t n)
{
  __atomic_fetch_add (&dev->counters[c], n, __ATOMIC_RELAXED);
}

static uint64_t
sector_start (const struct remap_device *dev, uint64_t sector)
{
  return sector * dev->geo.sector_size;
}

/* Bytes of a sector inside the export (the last one may be short). */
static uint32_t
sector_len (const struct remap_device *dev, uint64_t sector)
{
  uint64_t start = sector_start (dev, sector);
  uint64_t left = dev->geo.export_size - start;

  return left < dev->geo.sector_size ? left : dev->geo.sector_size;
}

static uint64_t
spare_offset (const struct remap_device *dev, uint32_t spare)
{
  return dev->geo.spare_offset + (uint64_t) spare * dev->geo.sector_size;
}

static bool
may_touch (const struct remap_device *dev, uint32_t count, uint64_t offset)
{
  uint32_t s = dev->geo.sector_size;
  return remap_table_may_touch (dev->table, offset / s,
                                (offset + count - 1) / s);
}

int
remap_device_walk (struct remap_device *dev, uint32_t count,
                   uint64_t offset, remap_span_fn span_fn, void *opaque,
                   int *err)
{
  const uint32_t ss = dev->geo.sector_size;
  const uint64_t end = offset + count;
  const uint64_t last = (end - 1) / ss;
  uint64_t run_start = offset, pos = offset;
  struct remap_entry e;
  int r;

  if (count == 0)
    return 0;
  while (pos < end &&
         remap_table_next (dev->table, pos / ss, last, &e)) {
    uint64_t sstart = sector_start (dev, e.sector);
    uint64_t send = sstart + ss < end ? sstart + ss : end;
    uint64_t pstart;

    /* Pending and reserved sectors still live on the origin. */
    if (e.state != REMAP_STATE_REMAPPED) {
      pos = send;
      continue;
    }
    if (sstart > run_start) {
      r = span_fn (opaque, run_start, sstart - run_start, NULL, err);
      if (r)
        return r;
    }
    pstart = sstart > run_start ? sstart : run_start;
    r = span_fn (opaque, pstart, send - pstart, &e, err);
    if (r)
      return r;
    run_start = pos = send;
  }
  if (run_start < end)
    return span_fn (opaque, run_start, end - run_start, NULL, err);
  return 0;
}

/* State shared by the span callbacks of one request. */
struct request {
  struct remap_device *dev;
  const struct remap_io *origin;
  uint64_t offset;              /* of the whole request */
  union {
    void *rbuf;
    const void *wbuf;           /* NULL for zero */
  };
  uint32_t flags;
  bool touched_spare;
};

static int
read_span (void *vp, uint64_t offset, uint32_t len,
           const struct remap_entry *e, int *err)
{
  struct request *rq = vp;
  unsigned char *buf = (unsigned char *) rq->rbuf + (offset - rq->offset);

  if (e == NULL)
    return rq->origin->pread (rq->origin->opaque, buf, len, offset, 0, err);
  rq->touched_spare = true;
  return rq->dev->store->pread (rq->dev->store->opaque, buf, len,
                                spare_offset (rq->dev, e->spare) +
                                (offset - sector_start (rq->dev, e->sector)),
                                0, err);
}

int
remap_device_pread (struct remap_device *dev, const struct remap_io *origin,
                    void *buf, uint32_t count, uint64_t offset,
                    uint32_t flags, int *err)
{
  struct request rq = { .dev = dev, .origin = origin, .offset = offset,
                        .rbuf = buf, .flags = flags };
  int r;

  bump (dev, REMAP_COUNTER_READS, 1);
  bump (dev, REMAP_COUNTER_BYTES_READ, count);
  if (!may_touch (dev, count, offset))
    r = origin->pread (origin->opaque, buf, count, offset, flags, err);
  else {
    r = remap_device_walk (dev, count, offset, read_span, &rq, err);
    if (rq.touched_spare)
      bump (dev, REMAP_COUNTER_REDIRECTED, 1);
  }
  if (r == -1)
    bump (dev, REMAP_COUNTER_READ_ERRORS, 1);
  return r;
}

/* Writes bytes [offset, offset+len) of a remapped sector to its spare:
 * data from buf, or zeros when buf is NULL.
 */
static int
write_spare (struct remap_device *dev, const struct remap_entry *e,
             const void *buf, uint32_t len, uint64_t offset, uint32_t flags,
             int *err)
{
  const struct remap_io *store = dev->store;
  uint64_t where = spare_offset (dev, e->spare) +
    (offset - sector_start (dev, e->sector));
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
    r = store->pwrite (store->opaque, buf ? buf : zero_sector, len, where,
                       store_flags, err);
  if (r == 0 && (flags & REMAP_FLAG_FUA) && !store->can_fua)
    r = remap_io_flush (store, err);
  return r;
}

/* Undoes a reservation whose spare never got its data. */
static void
abandon_reservation (struct remap_device *dev, uint64_t sector,
                     uint32_t spare)
{
  pthread_mutex_lock (&dev->remap_lock);
  remap_table_remove (dev->table, sector);
  remap_spares_release (dev->spares, spare);
  pthread_cond_broadcast (&dev->remap_cond);
  pthread_mutex_unlock (&dev->remap_lock);
}

/* The origin failed a write to part of this sector with EIO: move the
 * sector to a spare.  piece/piece_len/piece_offset describe what the
 * client is writing (piece NULL for zeros).
 */
static int
remap_sector (struct remap_device *dev, const struct remap_io *origin,
              uint64_t sector, const void *piece, uint32_t piece_len,
              uint64_t piece_offset, uint32_t flags, int *err)
{
  const uint64_t sstart = sector_start (dev, sector);
  const uint32_t slen = sector_len (dev, sector);
  CLEANUP_FREE unsigned char *data = NULL;
  struct remap_entry e;
  uint64_t gen;

  pthread_mutex_lock (&dev->remap_lock);
  for (;;) {
    if (dev->stopping) {
      pthread_mutex_unlock (&dev->remap_lock);
      *err = ESHUTDOWN;
      return -1;
    }
    if (!remap_table_lookup (dev->table, sector, &e) ||
        e.state == REMAP_STATE_PENDING)
      break;
    if (e.state == REMAP_STATE_REMAPPED) {
      /* Someone else remapped it first: one sector, one spare. */
      pthread_mutex_unlock (&dev->remap_lock);
      if (write_spare (dev, &e, piece, piece_len, piece_offset, flags,
                       err) == -1)
        return -1;
      return remap_sync_wait (dev->sync, remap_sync_current (dev->sync)) == 0
        ? 0 : (*err = errno, -1);
    }
    pthread_cond_wait (&dev->remap_cond, &dev->remap_lock);
  }
  if (remap_spares_alloc (dev->spares, &e.spare) == -1) {
    pthread_mutex_unlock (&dev->remap_lock);
    nbdkit_error ("remap: sector %" PRIu64 " failed to write and the spare "
                  "pool is exhausted (%" PRIu32 " spares, all used): the "
                  "write fails with ENOSPC.  Copy the data off this disk",
                  sector, dev->geo.spare_count);
    *err = ENOSPC;
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

  /* Build the whole sector: the old bytes around a partial write come
   * from the original sector, which may still be readable.
   */
  data = malloc (dev->geo.sector_size);
  if (data == NULL) {
    *err = ENOMEM;
    goto abandon;
  }
  if (piece_len < slen &&
      origin->pread (origin->opaque, data, slen, sstart, 0, err) == -1) {
    nbdkit_error ("remap: sector %" PRIu64 " failed to write and its old "
                  "contents cannot be read, so a partial write to it cannot "
                  "be completed", sector);
    goto abandon;
  }
  memcpy (data + (piece_offset - sstart), piece ? piece : zero_sector,
          piece_len);
  memset (data + slen, 0, dev->geo.sector_size - slen);
  if (write_spare (dev, &e, data, dev->geo.sector_size, sstart, 0,
                   err) == -1) {
    nbdkit_error ("remap: writing spare %" PRIu32 " for sector %" PRIu64
                  " failed: %s", e.spare, sector, strerror (*err));
    goto abandon;
  }

  pthread_mutex_lock (&dev->remap_lock);
  e.state = REMAP_STATE_REMAPPED;
  remap_table_insert (dev->table, &e); /* replaces, cannot fail */
  gen = remap_sync_mark_changed (dev->sync);
  pthread_cond_broadcast (&dev->remap_cond);
  pthread_mutex_unlock (&dev->remap_lock);
  bump (dev, REMAP_COUNTER_REMAPS, 1);
  nbdkit_debug ("remap: sector %" PRIu64 " remapped to spare %" PRIu32,
                sector, e.spare);

  if (remap_sync_wait (dev->sync, gen) == -1) {
    *err = errno;
    return -1;
  }
  return 0;

 abandon:
  abandon_reservation (dev, sector, e.spare);
  return -1;
}

/* A run of the origin failed with EIO: retry it sector by sector and
 * remap the sectors that still fail.
 */
static int
write_run_by_sector (struct request *rq, uint64_t offset, uint32_t len,
                     int *err)
{
  struct remap_device *dev = rq->dev;
  const struct remap_io *origin = rq->origin;
  const uint32_t ss = dev->geo.sector_size;
  const uint64_t end = offset + len;
  uint32_t origin_flags = rq->flags & ~REMAP_FLAG_FAST_ZERO;

  while (offset < end) {
    uint64_t sector = offset / ss;
    uint64_t pend = sector_start (dev, sector) + ss;
    uint32_t plen = (pend < end ? pend : end) - offset;
    const void *piece = rq->wbuf ?
      (const unsigned char *) rq->wbuf + (offset - rq->offset) : NULL;
    int r;

    if (piece)
      r = origin->pwrite (origin->opaque, piece, plen, offset,
                          origin_flags, err);
    else if (origin->zero)
      r = origin->zero (origin->opaque, plen, offset, origin_flags, err);
    else
      r = origin->pwrite (origin->opaque, zero_sector, plen, offset,
                          origin_flags, err);
    if (r == -1) {
      if (*err != EIO)
        return -1;
      bump (dev, REMAP_COUNTER_WRITE_ERRORS, 1);
      if (remap_sector (dev, origin, sector, piece, plen, offset,
                        rq->flags, err) == -1)
        return -1;
      rq->touched_spare = true;
    }
    offset += plen;
  }
  return 0;
}

static int
write_span (void *vp, uint64_t offset, uint32_t len,
            const struct remap_entry *e, int *err)
{
  struct request *rq = vp;
  const struct remap_io *origin = rq->origin;
  const void *buf = rq->wbuf ?
    (const unsigned char *) rq->wbuf + (offset - rq->offset) : NULL;
  int r;

  if (e) {
    rq->touched_spare = true;
    return write_spare (rq->dev, e, buf, len, offset, rq->flags, err);
  }
  if (buf)
    r = origin->pwrite (origin->opaque, buf, len, offset, rq->flags, err);
  else if (origin->zero)
    r = origin->zero (origin->opaque, len, offset, rq->flags, err);
  else
    r = write_run_by_sector (rq, offset, len, err);
  if (r == -1 && *err == EIO)
    return write_run_by_sector (rq, offset, len, err);
  return r;
}

/* After a write that went (partly) to spares: a FUA write needs its
 * remap entries to be durable too.
 */
static int
finish_write (struct request *rq, int r, int *err)
{
  struct remap_device *dev = rq->dev;

  if (rq->touched_spare)
    bump (dev, REMAP_COUNTER_REDIRECTED, 1);
  if (r == 0 && rq->touched_spare && (rq->flags & REMAP_FLAG_FUA) &&
      remap_sync_wait (dev->sync, remap_sync_current (dev->sync)) == -1) {
    *err = errno;
    r = -1;
  }
  return r;
}

static int
write_or_zero (struct remap_device *dev, const struct remap_io *origin,
               const void *buf, uint32_t count, uint64_t offset,
               uint32_t flags, int *err)
{
  struct request rq = { .dev = dev, .origin = origin, .offset = offset,
                        .wbuf = buf, .flags = flags };
  int r;

  bump (dev, REMAP_COUNTER_WRITES, 1);
  bump (dev, REMAP_COUNTER_BYTES_WRITTEN, count);
  if (!may_touch (dev, count, offset)) {
    if (buf)
      r = origin->pwrite (origin->opaque, buf, count, offset, flags, err);
    else
      r = origin->zero (origin->opaque, count, offset, flags, err);
    if (r == 0 || *err != EIO)
      return r;
    /* The fast path failed: find and remap the bad sectors. */
    r = write_run_by_sector (&rq, offset, count, err);
  }
  else
    r = remap_device_walk (dev, count, offset, write_span, &rq, err);
  return finish_write (&rq, r, err);
}

int
remap_device_pwrite (struct remap_device *dev, const struct remap_io *origin,
                     const void *buf, uint32_t count, uint64_t offset,
                     uint32_t flags, int *err)
{
  return write_or_zero (dev, origin, buf, count, offset, flags, err);
}

int
remap_device_zero (struct remap_device *dev, const struct remap_io *origin,
                   uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  if (origin->zero == NULL) {
    *err = ENOTSUP;
    return -1;
  }
  return write_or_zero (dev, origin, NULL, count, offset, flags, err);
}

/* Trim and cache are advisory: on a remapped sector they go to the
 * spare when the store can do them, and are skipped otherwise.
 */
static int
advisory_span (void *vp, uint64_t offset, uint32_t len,
               const struct remap_entry *e, int *err, bool trim)
{
  struct request *rq = vp;
  const struct remap_io *io = e ? rq->dev->store : rq->origin;
  int (*op) (void *, uint32_t, uint64_t, uint32_t, int *) =
    trim ? io->trim : io->cache;
  uint64_t where = e ? spare_offset (rq->dev, e->spare) +
    (offset - sector_start (rq->dev, e->sector)) : offset;

  if (op == NULL)
    return 0;
  return op (io->opaque, len, where, e ? 0 : rq->flags, err);
}

static int
trim_span (void *vp, uint64_t offset, uint32_t len,
           const struct remap_entry *e, int *err)
{
  return advisory_span (vp, offset, len, e, err, true);
}

static int
cache_span (void *vp, uint64_t offset, uint32_t len,
            const struct remap_entry *e, int *err)
{
  return advisory_span (vp, offset, len, e, err, false);
}

int
remap_device_trim (struct remap_device *dev, const struct remap_io *origin,
                   uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct request rq = { .dev = dev, .origin = origin, .offset = offset,
                        .flags = flags };

  if (!may_touch (dev, count, offset))
    return origin->trim (origin->opaque, count, offset, flags, err);
  return finish_write (&rq, remap_device_walk (dev, count, offset, trim_span,
                                               &rq, err), err);
}

int
remap_device_cache (struct remap_device *dev, const struct remap_io *origin,
                    uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct request rq = { .dev = dev, .origin = origin, .offset = offset,
                        .flags = flags };

  if (!may_touch (dev, count, offset))
    return origin->cache (origin->opaque, count, offset, flags, err);
  return remap_device_walk (dev, count, offset, cache_span, &rq, err);
}

int
remap_device_flush (struct remap_device *dev, const struct remap_io *origin,
                    int *err)
{
  if (remap_io_flush (origin, err) == -1)
    return -1;
  if (origin->opaque != dev->store->opaque &&
      __atomic_exchange_n (&dev->store_dirty, false, __ATOMIC_ACQ_REL) &&
      remap_io_flush (dev->store, err) == -1) {
    __atomic_store_n (&dev->store_dirty, true, __ATOMIC_RELEASE);
    return -1;
  }
  if (remap_sync_wait (dev->sync, remap_sync_current (dev->sync)) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}
