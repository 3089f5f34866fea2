/* nbdkit-remap: a struct remap_io over an nbdkit_next (the plugin,
 * or the filters below us), so that the core never sees nbdkit.
 *
 * The plugin's thread model.  nbdkit serializes the clients' requests
 * as the plugin asked, but our sync and control threads call the
 * plugin through the shared context on their own, and request threads
 * write spares through it too.  So when the model nbdkit settled on is
 * anything but parallel, every call we make to the plugin, on any
 * context, takes plugin_lock.  It is held for the one call only, never
 * while waiting for anything else (a sync, a remap), so it cannot take
 * part in a deadlock; under the parallel model it is never taken.
 *
 * Writeback errors.  A plugin over a page cache reports a media error
 * of a write at the next flush or FUA write (Linux tells each open file
 * once), so the EIO that a FUA write or a flush gets may belong to
 * another write of the same context whose data is gone:
 *  - to a write without FUA, acknowledged or under way: the data path
 *    retries the failed FUA write and may well succeed, which would
 *    hide that loss; so when a FUA write fails with EIO while a write
 *    without FUA is not yet covered by a good flush, the context owes
 *    its client an error, which its next flush reports.  Even if the
 *    retry fails again: one writeback error covers every page that
 *    failed, so the FUA write's own bad sector does not show that the
 *    other writes were spared;
 *  - to a FUA write under way: its own writeback then finds nothing
 *    left to write and succeeds, data lost.  So a FUA write that
 *    succeeds while an EIO reached another request of the context
 *    reports EIO itself, and the data path writes it again sector by
 *    sector from the client's buffer (remapping the sector that fails).
 * The first rule, and the check of a flush against other requests'
 * errors (next_flush), apply to a client's context only.  The shared
 * context is the filter's own: its spare writes fail and are retried
 * on other spares all the time on a failing disk, and failing its
 * table flushes for them would stop the table from ever being written
 * then; the clients' data on spares is covered anyway, because the
 * plugin tells each context (each open file) of every writeback error,
 * so the clients' own flushes hear it.
 * With remap-write-through=yes every write carries FUA, so nothing is
 * ever owed: each error is handled by the write it belongs to.  With
 * remap-plugin-cache=no (the plugin has no cache: errors are
 * immediate) none of this applies.
 * Counting costs two atomic additions per write without FUA, and two
 * loads per FUA write.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include <nbdkit-filter.h>

#include "nextio.h"

/* Set in .get_ready, before any thread that calls the plugin exists. */
static bool serialize;
static bool plugin_cache = true;        /* remap-plugin-cache */
static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;

void
remap_next_configure (int thread_model, bool cache)
{
  plugin_cache = cache;
  serialize = thread_model != NBDKIT_THREAD_MODEL_PARALLEL;
  if (serialize)
    nbdkit_debug ("remap: the plugin's thread model (%d) is not parallel: "
                  "our calls to it are serialized", thread_model);
}

void
remap_next_lock (void)
{
  if (serialize)
    pthread_mutex_lock (&plugin_lock);
}

void
remap_next_unlock (void)
{
  if (serialize)
    pthread_mutex_unlock (&plugin_lock);
}

/* struct remap_io over an nbdkit_next. */
static int
next_pread (void *opaque, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  nbdkit_next *next = ((struct remap_next *) opaque)->next;
  int r;

  remap_next_lock ();
  r = next->pread (next, buf, count, offset, flags, err);
  remap_next_unlock ();
  return r;
}

/* Bookkeeping around a write: see "Writeback errors" above.  Returns
 * what write_end needs to know of the moment the write began.
 */
static uint64_t
write_begin (struct remap_next *rn, uint32_t flags)
{
  if (!(flags & NBDKIT_FLAG_FUA)) {
    __atomic_add_fetch (&rn->started, 1, __ATOMIC_SEQ_CST);
    return 0;
  }
  return __atomic_load_n (&rn->eio_count, __ATOMIC_SEQ_CST);
}

static int
write_end (struct remap_next *rn, int r, uint32_t flags, int *err,
           uint64_t eio_count_at_start)
{
  if (!(flags & NBDKIT_FLAG_FUA)) {
    __atomic_add_fetch (&rn->finished, 1, __ATOMIC_SEQ_CST);
    return r;
  }
  if (!plugin_cache)
    return r;
  if (r == -1 && *err == EIO) {
    __atomic_add_fetch (&rn->eio_count, 1, __ATOMIC_SEQ_CST);
    if (rn->client &&
        __atomic_load_n (&rn->started, __ATOMIC_SEQ_CST) !=
        __atomic_load_n (&rn->durable, __ATOMIC_SEQ_CST) &&
        !__atomic_exchange_n (&rn->owed, true, __ATOMIC_SEQ_CST))
      nbdkit_debug ("remap: a FUA write failed with EIO while other writes "
                    "were not flushed: the error may have been theirs, so "
                    "the next flush reports it");
  }
  else if (r == 0 &&
           __atomic_load_n (&rn->eio_count, __ATOMIC_SEQ_CST) !=
           eio_count_at_start) {
    nbdkit_debug ("remap: a writeback error reached another request "
                  "during a FUA write: that write is tried again");
    *err = EIO;
    return -1;
  }
  return r;
}

static int
next_pwrite (void *opaque, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  struct remap_next *rn = opaque;
  uint64_t at_start = write_begin (rn, flags);
  int r;

  remap_next_lock ();
  r = rn->next->pwrite (rn->next, buf, count, offset, flags, err);
  remap_next_unlock ();
  return write_end (rn, r, flags, err, at_start);
}

static int
next_zero (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
           int *err)
{
  struct remap_next *rn = opaque;
  uint64_t at_start = write_begin (rn, flags);
  int r;

  remap_next_lock ();
  r = rn->next->zero (rn->next, count, offset, flags, err);
  remap_next_unlock ();
  return write_end (rn, r, flags, err, at_start);
}

static int
next_trim (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
           int *err)
{
  nbdkit_next *next = ((struct remap_next *) opaque)->next;
  int r;

  remap_next_lock ();
  r = next->trim (next, count, offset, flags, err);
  remap_next_unlock ();
  return r;
}

static int
next_cache (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
            int *err)
{
  nbdkit_next *next = ((struct remap_next *) opaque)->next;
  int r;

  remap_next_lock ();
  r = next->cache (next, count, offset, flags, err);
  remap_next_unlock ();
  return r;
}

/* A good flush covers every write acknowledged before it began; an
 * error owed to the client (see above) is reported here, once.  So
 * is an EIO that another flush or FUA write of the context heard
 * after this flush began, if a write without FUA that this flush must
 * cover was not yet covered by an earlier good flush: the plugin tells
 * each error once, and it may have been that write's.
 */
static int
next_flush (void *opaque, int *err)
{
  struct remap_next *rn = opaque;
  uint64_t finished = __atomic_load_n (&rn->finished, __ATOMIC_SEQ_CST);
  uint64_t eio_count = __atomic_load_n (&rn->eio_count, __ATOMIC_SEQ_CST);
  uint64_t durable = __atomic_load_n (&rn->durable, __ATOMIC_SEQ_CST);
  const bool uncovered = durable < finished;
  int r;

  pthread_mutex_lock (&rn->flush_lock);
  remap_next_lock ();
  r = rn->next->flush (rn->next, 0, err);
  remap_next_unlock ();
  if (r == -1) {
    if (*err == EIO) {
      /* The client hears it now; FUA writes and flushes under way may
       * have lost their data to it.
       */
      __atomic_add_fetch (&rn->eio_count, 1, __ATOMIC_SEQ_CST);
      __atomic_store_n (&rn->owed, false, __ATOMIC_SEQ_CST);
    }
    pthread_mutex_unlock (&rn->flush_lock);
    return -1;
  }
  pthread_mutex_unlock (&rn->flush_lock);
  if (plugin_cache && rn->client && uncovered &&
      __atomic_load_n (&rn->eio_count, __ATOMIC_SEQ_CST) != eio_count) {
    nbdkit_error ("remap: an earlier write may have been lost: the plugin "
                  "reported a writeback error to a request that ran "
                  "during this flush");
    *err = EIO;
    return -1;
  }
  durable = __atomic_load_n (&rn->durable, __ATOMIC_SEQ_CST);
  while (durable < finished &&
         !__atomic_compare_exchange_n (&rn->durable, &durable, finished,
                                       false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST))
    ;
  if (__atomic_exchange_n (&rn->owed, false, __ATOMIC_SEQ_CST)) {
    nbdkit_error ("remap: an earlier write may have been lost: the plugin "
                  "reported a writeback error to a later FUA write");
    *err = EIO;
    return -1;
  }
  return 0;
}

static int
next_extent (void *opaque, uint32_t count, uint64_t offset, uint64_t *run,
             bool *zero, int *err)
{
  nbdkit_next *next = ((struct remap_next *) opaque)->next;
  struct nbdkit_extents *exts = nbdkit_extents_new (offset, offset + count);
  struct nbdkit_extent e;
  int r;

  if (exts == NULL) {
    *err = errno;
    return -1;
  }
  remap_next_lock ();
  r = next->extents (next, count, offset, NBDKIT_FLAG_REQ_ONE, exts, err);
  remap_next_unlock ();
  if (r == -1) {
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
remap_io_from_next (nbdkit_next *next, bool client, struct remap_next *rn,
                    struct remap_io *io)
{
  int can_zero = -1, can_trim, can_cache, can_flush, can_fua, can_extents;
  bool failed;

  remap_next_lock ();
  failed = (can_zero = next->can_zero (next)) == -1 ||
    (can_trim = next->can_trim (next)) == -1 ||
    (can_cache = next->can_cache (next)) == -1 ||
    (can_flush = next->can_flush (next)) == -1 ||
    (can_fua = next->can_fua (next)) == -1 ||
    (can_extents = next->can_extents (next)) == -1;
  remap_next_unlock ();
  if (failed)
    return -1;
  *rn = (struct remap_next) { .next = next, .client = client,
                              .flush_lock = PTHREAD_MUTEX_INITIALIZER };
  *io = (struct remap_io) {
    .opaque = rn,
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
