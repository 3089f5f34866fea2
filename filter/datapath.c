/* nbdkit-remap: the data path (see device.h).
 *
 * Fast path: if the summary bitmap says no entry can lie in the
 * request, it goes to the origin as one call, and only an error sends
 * it to recovery.c.  Otherwise the request is walked in spans: runs of
 * ordinary sectors go to the origin in one call each, remapped sectors
 * to their spares, pending sectors to the rules for pending sectors.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "device.h"
#include "errseq.h"
#include "recovery.h"
#include "sector.h"

static bool
may_touch (const struct remap_device *dev, uint32_t count, uint64_t offset)
{
  return remap_table_may_touch (dev->table, offset >> dev->sector_shift,
                                (offset + count - 1) >> dev->sector_shift);
}

/* The walk runs in a walk window from its first lookup to its last
 * span, so a sector it saw remapped keeps its spare until the request
 * is done: an unmap waits for it (sector.h).
 */
static int walk_spans (struct remap_device *dev, uint32_t count,
                       uint64_t offset, remap_span_fn span_fn,
                       void *opaque, int *err);

int
remap_device_walk (struct remap_device *dev, uint32_t count,
                   uint64_t offset, remap_span_fn span_fn, void *opaque,
                   int *err)
{
  unsigned side = 0;
  struct remap_counter_slot *slot =
    remap_window_open (dev, REMAP_WINDOW_WALK, &side);
  int r;

  r = walk_spans (dev, count, offset, span_fn, opaque, err);
  remap_window_close (dev, slot, REMAP_WINDOW_WALK, side);
  return r;
}

static int
walk_spans (struct remap_device *dev, uint32_t count, uint64_t offset,
            remap_span_fn span_fn, void *opaque, int *err)
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
    uint64_t sstart = remap_sector_start (dev, e.sector);
    uint64_t send = sstart + ss < end ? sstart + ss : end;
    uint64_t pstart;

    /* A sector whose spare is not written yet still lives on the
     * origin, as part of the run.
     */
    if (e.state == REMAP_STATE_RESERVED) {
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
  bool touched_entry;
};

static int
read_run (struct remap_device *dev, const struct remap_io *origin,
          void *buf, uint32_t len, uint64_t offset, uint32_t flags, int *err)
{
  if (origin->pread (origin->opaque, buf, len, offset, flags, err) == 0)
    return 0;
  if (*err != EIO)
    return -1;
  return remap_recover_read (dev, origin, buf, len, offset, err);
}

static int
read_span (void *vp, uint64_t offset, uint32_t len,
           const struct remap_entry *e, int *err)
{
  struct request *rq = vp;
  unsigned char *buf = (unsigned char *) rq->rbuf + (offset - rq->offset);

  if (e == NULL)
    return read_run (rq->dev, rq->origin, buf, len, offset, 0, err);
  rq->touched_entry = true;
  if (e->state == REMAP_STATE_PENDING)
    return remap_pending_read (rq->dev, rq->origin, e, buf, len, offset,
                               err);
  return remap_spare_read (rq->dev, e, buf, len, offset, err);
}

int
remap_device_pread (struct remap_device *dev, const struct remap_io *origin,
                    void *buf, uint32_t count, uint64_t offset,
                    uint32_t flags, int *err)
{
  remap_count_request (dev, REMAP_COUNTER_READS, REMAP_COUNTER_BYTES_READ,
                       count);
  if (!may_touch (dev, count, offset))
    return read_run (dev, origin, buf, count, offset, flags, err);

  struct request rq = { .dev = dev, .origin = origin, .offset = offset,
                        .rbuf = buf, .flags = flags };
  int r = remap_device_walk (dev, count, offset, read_span, &rq, err);
  if (rq.touched_entry)
    remap_bump (dev, REMAP_COUNTER_REDIRECTED, 1);
  return r;
}

/* What follows an origin write of a run of normal sectors: remap-verify,
 * or recovery per sector of a failure.
 */
static int
after_origin_write (struct remap_device *dev, const struct remap_io *origin,
                    const void *buf, uint32_t len, uint64_t offset,
                    uint32_t flags, int r, int *err)
{
  if (r == 0)
    return dev->opt.verify
      ? remap_verify_run (dev, origin, buf, len, offset, flags, err) : 0;
  if (*err != EIO)
    return -1;
  return remap_write_per_unit (dev, origin, buf, len, offset, flags, true,
                               err);
}

static int
origin_write (const struct remap_io *origin, const void *buf, uint32_t len,
              uint64_t offset, uint32_t flags, int *err)
{
  if (buf)
    return origin->pwrite (origin->opaque, buf, len, offset, flags, err);
  return origin->zero (origin->opaque, len, offset, flags, err);
}

/* A run of sectors in which the walk found no entry.  The look is
 * repeated inside a write window, which makes the look and the origin
 * write one step for a move that begins meanwhile (sector.h): either
 * this write sees the move's entry and goes per unit, under the unit
 * locks, or the move waits until this write is on the origin.
 */
static int
write_clear_run (struct remap_device *dev, const struct remap_io *origin,
                 const void *buf, uint32_t len, uint64_t offset,
                 uint32_t flags, int *err)
{
  unsigned side = 0;
  struct remap_counter_slot *slot =
    remap_window_open (dev, REMAP_WINDOW_WRITE, &side);
  struct remap_entry e;
  int r;

  if (remap_table_next (dev->table, offset >> dev->sector_shift,
                        (offset + len - 1) >> dev->sector_shift, &e)) {
    remap_window_close (dev, slot, REMAP_WINDOW_WRITE, side);
    return remap_write_per_unit (dev, origin, buf, len, offset, flags, false,
                                 err);
  }
  r = origin_write (origin, buf, len, offset, flags, err);
  remap_window_close (dev, slot, REMAP_WINDOW_WRITE, side);
  return after_origin_write (dev, origin, buf, len, offset, flags, r, err);
}

static int
write_span (void *vp, uint64_t offset, uint32_t len,
            const struct remap_entry *e, int *err)
{
  struct request *rq = vp;
  const void *buf = rq->wbuf ?
    (const unsigned char *) rq->wbuf + (offset - rq->offset) : NULL;

  if (e == NULL)
    return write_clear_run (rq->dev, rq->origin, buf, len, offset,
                            rq->flags, err);
  rq->touched_entry = true;
  return remap_unit_write (rq->dev, rq->origin, e->sector, buf, len, offset,
                           rq->flags, false, err);
}

/* A FUA write is durable only with every table change made before it
 * ended: an entry it touched, and one it no longer sees (an unmap
 * whose table is not written yet would bring the old spare back after
 * a crash, without this write's data).
 */
static int
fua_wait (struct remap_device *dev, int r, uint32_t flags, int *err)
{
  if (r == 0 && (flags & REMAP_FLAG_FUA) &&
      remap_sync_wait (dev->sync, remap_sync_current (dev->sync)) == -1) {
    *err = errno;
    r = -1;
  }
  return r;
}

static int
finish_write (struct request *rq, int r, int *err)
{
  if (rq->touched_entry)
    remap_bump (rq->dev, REMAP_COUNTER_REDIRECTED, 1);
  return fua_wait (rq->dev, r, rq->flags, err);
}

/* The fast path: the window opens before the summary is looked at (see
 * write_clear_run); it costs two stores to this thread's counter slot
 * and a fence.
 */
static int
write_or_zero (struct remap_device *dev, const struct remap_io *origin,
               const void *buf, uint32_t count, uint64_t offset,
               uint32_t flags, int *err)
{
  unsigned side = 0;
  struct remap_counter_slot *slot = remap_count_write_open (dev, count,
                                                            &side);
  int r;

  if (!may_touch (dev, count, offset)) {
    if (buf)
      r = origin->pwrite (origin->opaque, buf, count, offset, flags, err);
    else
      r = origin->zero (origin->opaque, count, offset, flags, err);
    remap_window_close (dev, slot, REMAP_WINDOW_WRITE, side);
    if (r == 0 && !dev->opt.verify && !(flags & REMAP_FLAG_FUA))
      return 0;
    r = after_origin_write (dev, origin, buf, count, offset, flags, r, err);
    return fua_wait (dev, r, flags, err);
  }
  remap_window_close (dev, slot, REMAP_WINDOW_WRITE, side);

  struct request rq = { .dev = dev, .origin = origin, .offset = offset,
                        .wbuf = buf, .flags = flags };
  return finish_write (&rq, remap_device_walk (dev, count, offset,
                                               write_span, &rq, err), err);
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
  bool spare = e && e->state == REMAP_STATE_REMAPPED;
  const struct remap_io *io = spare ? rq->dev->store : rq->origin;
  int (*op) (void *, uint32_t, uint64_t, uint32_t, int *) =
    trim ? io->trim : io->cache;

  if (op == NULL)
    return 0;
  if (!spare)
    return op (io->opaque, len, offset, rq->flags, err);
  return op (io->opaque, len, remap_spare_where (rq->dev, e, offset), 0, err);
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

  if (origin->trim == NULL)
    return 0;
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

  if (origin->cache == NULL)
    return 0;
  if (!may_touch (dev, count, offset))
    return origin->cache (origin->opaque, count, offset, flags, err);
  return remap_device_walk (dev, count, offset, cache_span, &rq, err);
}

/* One flush of the store at a time, shared: a caller waits for a
 * round that began after it did (a round already running may have
 * begun before a spare write this caller must cover was done), and
 * fails if that round, or a later one it waited through, failed.  A
 * round skips the flush if no spare write completed since the last
 * round began (write_spare_raw marks the store dirty after the write)
 * and no writeback error is owed to the clients: the sync thread's
 * flush or a FUA spare write may have heard the error of a spare
 * write, and the round is how the clients hear it (errseq.c).
 */
static int
flush_store (struct remap_device *dev, int *err)
{
  uint64_t want;
  int r = 0;

  pthread_mutex_lock (&dev->flush_lock);
  want = dev->flush_started + 1;
  while (dev->flush_done < want) {
    if (dev->flush_running) {
      pthread_cond_wait (&dev->flush_cond, &dev->flush_lock);
      continue;
    }
    uint64_t round = ++dev->flush_started;
    int round_r = 0, round_err = 0;
    dev->flush_running = true;
    pthread_mutex_unlock (&dev->flush_lock);
    if ((__atomic_exchange_n (&dev->store_dirty, false, __ATOMIC_ACQ_REL) ||
         remap_errseq_owed (dev->store->errseq)) &&
        (round_r = remap_io_flush_reported (dev->store, &round_err)) == -1)
      __atomic_store_n (&dev->store_dirty, true, __ATOMIC_RELEASE);
    pthread_mutex_lock (&dev->flush_lock);
    dev->flush_running = false;
    dev->flush_done = round;
    if (round_r == -1) {
      dev->flush_failed = round;
      dev->flush_errno = round_err;
    }
    pthread_cond_broadcast (&dev->flush_cond);
  }
  if (dev->flush_failed >= want) {
    *err = dev->flush_errno;
    r = -1;
  }
  pthread_mutex_unlock (&dev->flush_lock);
  return r;
}

int
remap_device_flush (struct remap_device *dev, const struct remap_io *origin,
                    int *err)
{
  if (remap_io_flush (origin, err) == -1)
    return -1;
  if (origin->opaque != dev->store->opaque && flush_store (dev, err) == -1)
    return -1;
  if (remap_sync_wait (dev->sync, remap_sync_current (dev->sync)) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}
