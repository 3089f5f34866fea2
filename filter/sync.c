/* nbdkit-remap: the background metadata-sync thread (see sync.h for
 * the protocol between the thread, its waiters and shutdown).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "sync.h"

struct remap_sync {
  pthread_mutex_t lock;
  pthread_cond_t cond;          /* the thread and all waiters sleep here,
                                   timed on CLOCK_MONOTONIC */
  uint64_t changed;             /* bumped on every change or retry */
  uint64_t attempted;           /* 'changed' at the last write attempt */
  uint64_t durable;             /* 'changed' at the last good write */
  uint64_t failed;              /* 'changed' at the last failed write */
  int failed_errno;
  bool cancelled;
  bool thread_running;
  pthread_t thread;

  /* Serialises calls of write_fn (thread vs. remap_sync_now). */
  pthread_mutex_t write_lock;
  remap_sync_write_fn write_fn;
  void *opaque;
  remap_abort_fn abort_fn;      /* may be NULL */
  void *abort_opaque;

  struct remap_sync_stats stats;
};

struct remap_sync *
remap_sync_new (remap_sync_write_fn write_fn, void *opaque)
{
  struct remap_sync *s = calloc (1, sizeof *s);
  pthread_condattr_t attr;

  if (s == NULL)
    return NULL;
  pthread_mutex_init (&s->lock, NULL);
  pthread_mutex_init (&s->write_lock, NULL);
  /* A waiter's 100 ms poll of the abort function must not stretch
   * when the wall clock is set back, or a request could outlive a
   * SIGTERM by as long as the clock jumped.
   */
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&s->cond, &attr);
  pthread_condattr_destroy (&attr);
  s->write_fn = write_fn;
  s->opaque = opaque;
  return s;
}

void
remap_sync_free (struct remap_sync *s)
{
  if (s) {
    remap_sync_stop (s);
    pthread_cond_destroy (&s->cond);
    pthread_mutex_destroy (&s->write_lock);
    pthread_mutex_destroy (&s->lock);
    free (s);
  }
}

static uint64_t
elapsed_ns (const struct timespec *a, const struct timespec *b)
{
  return (uint64_t) (b->tv_sec - a->tv_sec) * 1000000000 +
    b->tv_nsec - a->tv_nsec;
}

/* Writes everything up to 'target' and publishes the outcome.  Called
 * without s->lock held.
 */
static int
write_and_publish (struct remap_sync *s, uint64_t target)
{
  struct timespec t0, t1;
  int r, saved_errno;

  pthread_mutex_lock (&s->write_lock);
  clock_gettime (CLOCK_MONOTONIC, &t0);
  r = s->write_fn (s->opaque);
  saved_errno = errno;
  clock_gettime (CLOCK_MONOTONIC, &t1);
  pthread_mutex_unlock (&s->write_lock);

  pthread_mutex_lock (&s->lock);
  s->stats.last_attempt_ns = elapsed_ns (&t0, &t1);
  s->stats.last_failed = r == -1;
  if (target > s->attempted)
    s->attempted = target;
  if (r == 0) {
    if (target > s->durable)
      s->durable = target;
    s->stats.syncs++;
    s->stats.last_duration_ns = elapsed_ns (&t0, &t1);
    s->stats.last_sync_time = time (NULL);
  }
  else {
    if (target > s->failed)
      s->failed = target;
    s->failed_errno = saved_errno ? saved_errno : EIO;
    s->stats.failures++;
  }
  pthread_cond_broadcast (&s->cond);
  pthread_mutex_unlock (&s->lock);
  errno = saved_errno;
  return r;
}

static void *
sync_thread (void *vp)
{
  struct remap_sync *s = vp;

  pthread_mutex_lock (&s->lock);
  for (;;) {
    uint64_t target;

    while (!s->cancelled && s->changed == s->attempted)
      pthread_cond_wait (&s->cond, &s->lock);
    if (s->cancelled)
      break;
    /* Everything changed up to now goes into this one write, which is
     * how a burst of remaps shares a single sync.
     */
    target = s->changed;
    pthread_mutex_unlock (&s->lock);
    write_and_publish (s, target);
    pthread_mutex_lock (&s->lock);
  }
  pthread_mutex_unlock (&s->lock);
  return NULL;
}

int
remap_sync_start (struct remap_sync *s)
{
  int err;

  pthread_mutex_lock (&s->lock);
  s->cancelled = false;
  err = pthread_create (&s->thread, NULL, sync_thread, s);
  if (err == 0)
    s->thread_running = true;
  pthread_mutex_unlock (&s->lock);
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

void
remap_sync_stop (struct remap_sync *s)
{
  bool join;

  pthread_mutex_lock (&s->lock);
  s->cancelled = true;
  pthread_cond_broadcast (&s->cond);
  join = s->thread_running;
  s->thread_running = false;
  pthread_mutex_unlock (&s->lock);
  if (join)
    pthread_join (s->thread, NULL);
}

uint64_t
remap_sync_mark_changed (struct remap_sync *s)
{
  uint64_t gen;

  pthread_mutex_lock (&s->lock);
  gen = ++s->changed;
  pthread_cond_broadcast (&s->cond);
  pthread_mutex_unlock (&s->lock);
  return gen;
}

uint64_t
remap_sync_current (struct remap_sync *s)
{
  uint64_t gen;

  pthread_mutex_lock (&s->lock);
  gen = s->changed;
  pthread_mutex_unlock (&s->lock);
  return gen;
}

bool
remap_sync_is_dirty (struct remap_sync *s)
{
  bool dirty;

  pthread_mutex_lock (&s->lock);
  dirty = s->durable != s->changed;
  pthread_mutex_unlock (&s->lock);
  return dirty;
}

int
remap_sync_wait (struct remap_sync *s, uint64_t gen)
{
  uint64_t failures_at_start;

  pthread_mutex_lock (&s->lock);
  if (s->durable >= gen) {
    pthread_mutex_unlock (&s->lock);
    return 0;
  }
  if (s->cancelled) {
    pthread_mutex_unlock (&s->lock);
    errno = ESHUTDOWN;
    return -1;
  }
  if (!s->thread_running) {
    pthread_mutex_unlock (&s->lock);
    return remap_sync_now (s);
  }
  /* An earlier attempt covering gen failed: ask for a fresh one
   * rather than report a failure we did not see happen.
   */
  if (s->failed >= gen) {
    s->changed++;
    pthread_cond_broadcast (&s->cond);
  }
  failures_at_start = s->stats.failures;
  /* A failure of an attempt that did not cover gen is not ours.  When
   * the server is quitting, waiting for the write is pointless: it
   * cannot be acknowledged anyway, so check that every 100 ms.
   */
  bool aborted = false;
  while (!s->cancelled && s->durable < gen &&
         !(s->stats.failures != failures_at_start && s->failed >= gen)) {
    if (s->abort_fn) {
      struct timespec until;
      clock_gettime (CLOCK_MONOTONIC, &until);
      until.tv_nsec += 100000000;
      if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait (&s->cond, &s->lock, &until);
      if (s->durable < gen && s->abort_fn (s->abort_opaque)) {
        aborted = true;
        break;
      }
    }
    else
      pthread_cond_wait (&s->cond, &s->lock);
  }

  if (s->durable >= gen) {
    pthread_mutex_unlock (&s->lock);
    return 0;
  }
  errno = s->cancelled || aborted ? ESHUTDOWN : s->failed_errno;
  pthread_mutex_unlock (&s->lock);
  return -1;
}

int
remap_sync_now (struct remap_sync *s)
{
  uint64_t target;

  pthread_mutex_lock (&s->lock);
  target = s->changed;
  if (s->durable == target) {
    pthread_mutex_unlock (&s->lock);
    return 0;
  }
  pthread_mutex_unlock (&s->lock);
  return write_and_publish (s, target);
}

void
remap_sync_set_abort (struct remap_sync *s, remap_abort_fn fn, void *opaque)
{
  pthread_mutex_lock (&s->lock);
  s->abort_fn = fn;
  s->abort_opaque = opaque;
  pthread_mutex_unlock (&s->lock);
}

void
remap_sync_get_stats (struct remap_sync *s, struct remap_sync_stats *stats)
{
  pthread_mutex_lock (&s->lock);
  *stats = s->stats;
  pthread_mutex_unlock (&s->lock);
}
