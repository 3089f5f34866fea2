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
 * Writeback errors (errseq.c).  A plugin over a page cache reports a
 * media error of a write at the next flush or FUA write, once per
 * context, so each context keeps a struct remap_errseq.  A client's
 * context reports its flush's result to that client, so its flush is
 * a reporting one.  The shared context is the store in internal mode:
 * its own flushes (the table's, a FUA emulation) do not report, and
 * the clients' flushes of the store (datapath.c) do.
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

static int
next_pwrite (void *opaque, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  struct remap_next *rn = opaque;
  uint64_t at_start = remap_errseq_write_begin (&rn->errseq, flags);
  int r;

  remap_next_lock ();
  r = rn->next->pwrite (rn->next, buf, count, offset, flags, err);
  remap_next_unlock ();
  return remap_errseq_write_end (&rn->errseq, r, flags, err, at_start);
}

static int
next_zero (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
           int *err)
{
  struct remap_next *rn = opaque;
  uint64_t at_start = remap_errseq_write_begin (&rn->errseq, flags);
  int r;

  remap_next_lock ();
  r = rn->next->zero (rn->next, count, offset, flags, err);
  remap_next_unlock ();
  return remap_errseq_write_end (&rn->errseq, r, flags, err, at_start);
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

/* The plugin's flush, without bookkeeping (errseq.c does it). */
static int
plugin_flush (void *opaque, int *err)
{
  nbdkit_next *next = ((struct remap_next *) opaque)->next;
  int r;

  remap_next_lock ();
  r = next->flush (next, 0, err);
  remap_next_unlock ();
  return r;
}

/* A client's flush: its result goes to the client. */
static int
next_flush (void *opaque, int *err)
{
  return remap_errseq_flush (&((struct remap_next *) opaque)->errseq, true,
                             err);
}

/* The filter's own flush of the shared context. */
static int
next_flush_own (void *opaque, int *err)
{
  return remap_errseq_flush (&((struct remap_next *) opaque)->errseq, false,
                             err);
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
  rn->next = next;
  remap_errseq_init (&rn->errseq, plugin_flush, rn, plugin_cache);
  *io = (struct remap_io) {
    .opaque = rn,
    .pread = next_pread,
    .pwrite = next_pwrite,
    .zero = can_zero == NBDKIT_ZERO_NATIVE ? next_zero : NULL,
    .trim = can_trim ? next_trim : NULL,
    .cache = can_cache != NBDKIT_CACHE_NONE ? next_cache : NULL,
    .flush = !can_flush ? NULL : client ? next_flush : next_flush_own,
    .extent = can_extents ? next_extent : NULL,
    .can_fua = can_fua != NBDKIT_FUA_NONE,
    .errseq = &rn->errseq,
  };
  return 0;
}
