/* nbdkit-remap unit tests: the metadata-sync thread and its waiters
 * (sync.c).
 *
 * A fake write function counts its calls and can be made to fail or
 * to block on a condition variable.  Covers: a wait returns only
 * after the write; marks made while a write is in flight coalesce
 * into one further write; a failed write fails the waiters of that
 * generation with its errno, and a later wait retries; stopping while
 * a waiter waits (and while the write blocks) releases the waiter
 * with ESHUTDOWN and never hangs; without a thread, wait writes
 * inline; stop is idempotent; and the statistics.  Every thread the
 * tests start is joined with a deadline, so a hang fails the test.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>

#include "sync.h"

#define DEADLINE_SECONDS 5

/* ---- The fake write function. ---- */

struct fake {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  unsigned calls;               /* writes started */
  unsigned completed;           /* writes returned */
  bool block;                   /* writes wait until this is false */
  bool in_write;                /* a write is blocked right now */
  bool fail;                    /* writes fail ... */
  int fail_errno;               /* ... with this errno */
  unsigned fail_first;          /* the first this many calls fail too */
  pthread_t last_thread;        /* who called it last */
};

static void
fake_init (struct fake *f)
{
  memset (f, 0, sizeof *f);
  pthread_mutex_init (&f->lock, NULL);
  pthread_cond_init (&f->cond, NULL);
  f->fail_errno = EIO;
}

static void
fake_destroy (struct fake *f)
{
  pthread_cond_destroy (&f->cond);
  pthread_mutex_destroy (&f->lock);
}

static int
fake_write (void *vp)
{
  struct fake *f = vp;
  unsigned call;
  int r = 0, e = 0;

  pthread_mutex_lock (&f->lock);
  call = ++f->calls;
  f->last_thread = pthread_self ();
  f->in_write = true;
  pthread_cond_broadcast (&f->cond);
  while (f->block)
    pthread_cond_wait (&f->cond, &f->lock);
  f->in_write = false;
  if (f->fail || call <= f->fail_first) {
    r = -1;
    e = f->fail_errno;
  }
  f->completed++;
  pthread_cond_broadcast (&f->cond);
  pthread_mutex_unlock (&f->lock);
  errno = e;
  return r;
}

static void
fake_set (struct fake *f, bool *field, bool value)
{
  pthread_mutex_lock (&f->lock);
  *field = value;
  pthread_cond_broadcast (&f->cond);
  pthread_mutex_unlock (&f->lock);
}

static unsigned
fake_get (struct fake *f, unsigned *field)
{
  unsigned v;

  pthread_mutex_lock (&f->lock);
  v = *field;
  pthread_mutex_unlock (&f->lock);
  return v;
}

static void
deadline_in (struct timespec *ts, int seconds)
{
  clock_gettime (CLOCK_REALTIME, ts);
  ts->tv_sec += seconds;
}

/* Waits (with the deadline) until a write is blocked in the fake. */
static void
fake_wait_in_write (struct fake *f)
{
  struct timespec ts;
  int r = 0;

  deadline_in (&ts, DEADLINE_SECONDS);
  pthread_mutex_lock (&f->lock);
  while (!f->in_write && r == 0)
    r = pthread_cond_timedwait (&f->cond, &f->lock, &ts);
  pthread_mutex_unlock (&f->lock);
  ck_assert_msg (r == 0, "no write started within %d s", DEADLINE_SECONDS);
}

static void
short_sleep (void)
{
  const struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };

  nanosleep (&ts, NULL);
}

static struct remap_sync *
new_sync (struct fake *f)
{
  struct remap_sync *s = remap_sync_new (fake_write, f);

  ck_assert_ptr_nonnull (s);
  return s;
}

/* ---- Threads with deadlines. ---- */

struct waiter {
  pthread_t thread;
  struct remap_sync *s;
  struct fake *f;
  uint64_t gen;
  int r, err;
  unsigned completed_at_return;  /* fake writes finished when it returned */
  bool done;                     /* atomic */
};

static void *
waiter_thread (void *vp)
{
  struct waiter *w = vp;

  w->r = remap_sync_wait (w->s, w->gen);
  w->err = errno;
  w->completed_at_return = fake_get (w->f, &w->f->completed);
  __atomic_store_n (&w->done, true, __ATOMIC_RELEASE);
  return NULL;
}

static void
start_waiter (struct waiter *w, struct remap_sync *s, struct fake *f,
              uint64_t gen)
{
  memset (w, 0, sizeof *w);
  w->s = s;
  w->f = f;
  w->gen = gen;
  ck_assert_int_eq (pthread_create (&w->thread, NULL, waiter_thread, w), 0);
}

static bool
waiter_done (struct waiter *w)
{
  return __atomic_load_n (&w->done, __ATOMIC_ACQUIRE);
}

/* Joins a thread, failing the test if it does not finish in time.  (A
 * thread that hangs is left behind: the test has failed anyway.)
 */
static void
join_by_deadline (pthread_t thread, const char *what)
{
  struct timespec ts;
  int r;

  deadline_in (&ts, DEADLINE_SECONDS);
  r = pthread_timedjoin_np (thread, NULL, &ts);
  ck_assert_msg (r == 0, "%s did not return within %d s (%s)", what,
                 DEADLINE_SECONDS, strerror (r));
}

struct stopper {
  pthread_t thread;
  struct remap_sync *s;
  bool done;                    /* atomic */
};

static void *
stopper_thread (void *vp)
{
  struct stopper *st = vp;

  remap_sync_stop (st->s);
  __atomic_store_n (&st->done, true, __ATOMIC_RELEASE);
  return NULL;
}

static void
start_stopper (struct stopper *st, struct remap_sync *s)
{
  memset (st, 0, sizeof *st);
  st->s = s;
  ck_assert_int_eq (pthread_create (&st->thread, NULL, stopper_thread, st),
                    0);
}

/* ---- Tests. ---- */

START_TEST (test_inline_without_thread)
{
  struct fake f;
  struct remap_sync *s;
  struct remap_sync_stats stats;
  uint64_t g1, g2;

  fake_init (&f);
  s = new_sync (&f);
  ck_assert (!remap_sync_is_dirty (s));
  ck_assert_uint_eq (remap_sync_current (s), 0);

  /* Nothing changed: nothing to write. */
  ck_assert_int_eq (remap_sync_wait (s, 0), 0);
  ck_assert_int_eq (remap_sync_now (s), 0);
  ck_assert_uint_eq (f.calls, 0);

  g1 = remap_sync_mark_changed (s);
  g2 = remap_sync_mark_changed (s);
  ck_assert_uint_gt (g2, g1);
  ck_assert_uint_eq (remap_sync_current (s), g2);
  ck_assert (remap_sync_is_dirty (s));
  ck_assert_int_eq (remap_sync_wait (s, g1), 0);
  /* Written once, in this thread, covering both changes. */
  ck_assert_uint_eq (f.calls, 1);
  ck_assert (pthread_equal (f.last_thread, pthread_self ()));
  ck_assert (!remap_sync_is_dirty (s));
  ck_assert_int_eq (remap_sync_wait (s, g2), 0);
  ck_assert_int_eq (remap_sync_now (s), 0);
  ck_assert_uint_eq (f.calls, 1);

  /* An inline failure is reported with the write's errno. */
  f.fail = true;
  f.fail_errno = ENOSPC;
  g1 = remap_sync_mark_changed (s);
  errno = 0;
  ck_assert_int_eq (remap_sync_wait (s, g1), -1);
  ck_assert_int_eq (errno, ENOSPC);
  ck_assert (remap_sync_is_dirty (s));
  f.fail = false;
  ck_assert_int_eq (remap_sync_wait (s, g1), 0);
  ck_assert_uint_eq (f.calls, 3);
  ck_assert (!remap_sync_is_dirty (s));

  remap_sync_get_stats (s, &stats);
  ck_assert_uint_eq (stats.syncs, 2);
  ck_assert_uint_eq (stats.failures, 1);
  ck_assert_uint_gt (stats.last_sync_time, 0);

  remap_sync_free (s);
  fake_destroy (&f);
}
END_TEST

START_TEST (test_wait_returns_after_write)
{
  struct fake f;
  struct remap_sync *s;
  struct waiter w;
  uint64_t gen;

  fake_init (&f);
  s = new_sync (&f);
  ck_assert_int_eq (remap_sync_start (s), 0);

  f.block = true;
  gen = remap_sync_mark_changed (s);
  start_waiter (&w, s, &f, gen);
  fake_wait_in_write (&f);
  short_sleep ();
  ck_assert_msg (!waiter_done (&w), "wait returned while the write was "
                 "still in progress");
  ck_assert (remap_sync_is_dirty (s));
  fake_set (&f, &f.block, false);
  join_by_deadline (w.thread, "the waiter");
  ck_assert_int_eq (w.r, 0);
  ck_assert_uint_ge (w.completed_at_return, 1);
  ck_assert_uint_eq (fake_get (&f, &f.calls), 1);
  ck_assert (!remap_sync_is_dirty (s));
  /* The write happened in the sync thread. */
  ck_assert (!pthread_equal (f.last_thread, pthread_self ()));
  ck_assert (!pthread_equal (f.last_thread, w.thread));

  remap_sync_stop (s);
  remap_sync_free (s);
  fake_destroy (&f);
}
END_TEST

START_TEST (test_coalesce)
{
  struct fake f;
  struct remap_sync *s;
  struct remap_sync_stats stats;
  uint64_t first, last = 0;

  fake_init (&f);
  s = new_sync (&f);
  ck_assert_int_eq (remap_sync_start (s), 0);

  f.block = true;
  first = remap_sync_mark_changed (s);
  fake_wait_in_write (&f);
  /* Many changes while that write is in flight ... */
  for (int i = 0; i < 50; i++)
    last = remap_sync_mark_changed (s);
  ck_assert_uint_eq (fake_get (&f, &f.calls), 1);
  fake_set (&f, &f.block, false);
  ck_assert_int_eq (remap_sync_wait (s, first), 0);
  ck_assert_int_eq (remap_sync_wait (s, last), 0);
  /* ... went into one more write, and no other follows. */
  ck_assert_uint_eq (fake_get (&f, &f.calls), 2);
  short_sleep ();
  ck_assert_uint_eq (fake_get (&f, &f.calls), 2);
  ck_assert (!remap_sync_is_dirty (s));
  remap_sync_get_stats (s, &stats);
  ck_assert_uint_eq (stats.syncs, 2);
  ck_assert_uint_eq (stats.failures, 0);

  /* Waiting again for what is durable writes nothing. */
  ck_assert_int_eq (remap_sync_wait (s, last), 0);
  ck_assert_uint_eq (fake_get (&f, &f.calls), 2);

  remap_sync_free (s);          /* stops the thread itself */
  fake_destroy (&f);
}
END_TEST

START_TEST (test_failure_then_retry)
{
  struct fake f;
  struct remap_sync *s;
  struct remap_sync_stats stats;
  struct waiter w[3];
  uint64_t gen;
  unsigned calls;

  fake_init (&f);
  s = new_sync (&f);
  ck_assert_int_eq (remap_sync_start (s), 0);

  /* Three waiters for a generation whose write fails. */
  f.block = true;
  f.fail = true;
  gen = remap_sync_mark_changed (s);
  fake_wait_in_write (&f);
  for (int i = 0; i < 3; i++)
    start_waiter (&w[i], s, &f, gen);
  short_sleep ();
  fake_set (&f, &f.block, false);
  for (int i = 0; i < 3; i++) {
    join_by_deadline (w[i].thread, "a waiter of a failed write");
    ck_assert_int_eq (w[i].r, -1);
    ck_assert_int_eq (w[i].err, EIO);
  }
  ck_assert (remap_sync_is_dirty (s));
  /* No retry happens by itself.  (Normally one attempt was made; a
   * waiter that arrived after the failure asks for one more.)
   */
  calls = fake_get (&f, &f.calls);
  ck_assert_uint_ge (calls, 1);
  short_sleep ();
  ck_assert_uint_eq (fake_get (&f, &f.calls), calls);

  /* A later wait asks for a new attempt, which succeeds. */
  fake_set (&f, &f.fail, false);
  ck_assert_int_eq (remap_sync_wait (s, gen), 0);
  ck_assert_uint_eq (fake_get (&f, &f.calls), calls + 1);
  ck_assert (!remap_sync_is_dirty (s));
  remap_sync_get_stats (s, &stats);
  ck_assert_uint_eq (stats.syncs, 1);
  ck_assert_uint_eq (stats.failures, calls);

  /* The write's own errno reaches the waiter. */
  fake_set (&f, &f.fail, true);
  f.fail_errno = EROFS;
  gen = remap_sync_mark_changed (s);
  errno = 0;
  ck_assert_int_eq (remap_sync_wait (s, gen), -1);
  ck_assert_int_eq (errno, EROFS);

  remap_sync_stop (s);
  remap_sync_free (s);
  fake_destroy (&f);
}
END_TEST

/* A failure of a write that did not cover my generation is not mine:
 * the thread goes on to write my change.
 */
START_TEST (test_older_failure_not_mine)
{
  struct fake f;
  struct remap_sync *s;
  struct waiter w;
  uint64_t old, mine;

  fake_init (&f);
  s = new_sync (&f);
  ck_assert_int_eq (remap_sync_start (s), 0);

  f.block = true;
  f.fail_first = 1;
  old = remap_sync_mark_changed (s);
  fake_wait_in_write (&f);
  mine = remap_sync_mark_changed (s);
  ck_assert_uint_gt (mine, old);
  start_waiter (&w, s, &f, mine);
  short_sleep ();
  /* The in-flight write (of 'old') fails; the next one succeeds. */
  fake_set (&f, &f.block, false);
  join_by_deadline (w.thread, "the waiter");
  ck_assert_int_eq (w.r, 0);
  ck_assert_uint_eq (fake_get (&f, &f.calls), 2);

  remap_sync_free (s);
  fake_destroy (&f);
}
END_TEST

/* Stop while a waiter waits and the write is stuck: the waiter is
 * released with ESHUTDOWN at once, and stop returns as soon as the
 * write does.
 */
START_TEST (test_stop_during_blocked_write)
{
  struct fake f;
  struct remap_sync *s;
  struct waiter covered, later;
  struct stopper st;
  uint64_t g1, g2;

  fake_init (&f);
  s = new_sync (&f);
  ck_assert_int_eq (remap_sync_start (s), 0);

  f.block = true;
  g1 = remap_sync_mark_changed (s);
  fake_wait_in_write (&f);
  g2 = remap_sync_mark_changed (s);
  start_waiter (&covered, s, &f, g1);   /* the blocked write covers it */
  start_waiter (&later, s, &f, g2);     /* no write covers it yet */
  short_sleep ();
  ck_assert (!waiter_done (&covered));
  ck_assert (!waiter_done (&later));

  start_stopper (&st, s);
  /* Both waiters return while the write is still blocked. */
  join_by_deadline (covered.thread, "a waiter, after stop");
  join_by_deadline (later.thread, "a waiter, after stop");
  ck_assert_int_eq (covered.r, -1);
  ck_assert_int_eq (covered.err, ESHUTDOWN);
  ck_assert_int_eq (later.r, -1);
  ck_assert_int_eq (later.err, ESHUTDOWN);

  fake_set (&f, &f.block, false);
  join_by_deadline (st.thread, "remap_sync_stop");
  /* The thread did not start another write after the stop. */
  ck_assert_uint_eq (fake_get (&f, &f.calls), 1);

  /* After stop nobody waits. */
  errno = 0;
  ck_assert_int_eq (remap_sync_wait (s, g2), -1);
  ck_assert_int_eq (errno, ESHUTDOWN);
  /* But shutdown can still write the last changes inline. */
  ck_assert (remap_sync_is_dirty (s));
  ck_assert_int_eq (remap_sync_now (s), 0);
  ck_assert (!remap_sync_is_dirty (s));
  ck_assert (pthread_equal (f.last_thread, pthread_self ()));

  remap_sync_free (s);
  fake_destroy (&f);
}
END_TEST

/* Unblock the write and stop at once: the waiter gets 0 if the write
 * was published first, ESHUTDOWN otherwise; nothing hangs.
 */
START_TEST (test_stop_racing_write)
{
  for (int round = 0; round < 20; round++) {
    struct fake f;
    struct remap_sync *s;
    struct waiter w;
    struct stopper st;
    uint64_t gen;

    fake_init (&f);
    s = new_sync (&f);
    ck_assert_int_eq (remap_sync_start (s), 0);
    f.block = true;
    gen = remap_sync_mark_changed (s);
    fake_wait_in_write (&f);
    start_waiter (&w, s, &f, gen);
    if (round % 2)
      short_sleep ();
    fake_set (&f, &f.block, false);
    start_stopper (&st, s);
    join_by_deadline (st.thread, "remap_sync_stop");
    join_by_deadline (w.thread, "the waiter");
    if (w.r == 0)
      ck_assert_uint_eq (w.completed_at_return, 1);
    else
      ck_assert_int_eq (w.err, ESHUTDOWN);
    remap_sync_free (s);
    fake_destroy (&f);
  }
}
END_TEST

START_TEST (test_stop_idempotent)
{
  struct fake f;
  struct remap_sync *s;

  fake_init (&f);

  /* Never started. */
  s = new_sync (&f);
  remap_sync_stop (s);
  remap_sync_stop (s);
  remap_sync_free (s);

  /* Started, idle. */
  s = new_sync (&f);
  ck_assert_int_eq (remap_sync_start (s), 0);
  remap_sync_stop (s);
  remap_sync_stop (s);
  remap_sync_free (s);

  /* Freed while running. */
  s = new_sync (&f);
  ck_assert_int_eq (remap_sync_start (s), 0);
  ck_assert_int_eq (remap_sync_wait (s, remap_sync_mark_changed (s)), 0);
  remap_sync_free (s);

  ck_assert_uint_eq (f.calls, 1);
  fake_destroy (&f);
}
END_TEST

START_TEST (test_stats)
{
  struct fake f;
  struct remap_sync *s;
  struct remap_sync_stats stats;

  fake_init (&f);
  s = new_sync (&f);
  remap_sync_get_stats (s, &stats);
  ck_assert_uint_eq (stats.syncs, 0);
  ck_assert_uint_eq (stats.failures, 0);
  ck_assert_uint_eq (stats.last_sync_time, 0);

  ck_assert_int_eq (remap_sync_start (s), 0);
  for (int i = 1; i <= 5; i++) {
    ck_assert_int_eq (remap_sync_wait (s, remap_sync_mark_changed (s)), 0);
    remap_sync_get_stats (s, &stats);
    ck_assert_uint_eq (stats.syncs, i);
  }
  fake_set (&f, &f.fail, true);
  ck_assert_int_eq (remap_sync_wait (s, remap_sync_mark_changed (s)), -1);
  remap_sync_get_stats (s, &stats);
  ck_assert_uint_eq (stats.syncs, 5);
  /* One failure, or two if the first failed before the wait began
   * (the wait then asks for a fresh attempt): every attempt counted.
   */
  ck_assert_uint_ge (stats.failures, 1);
  ck_assert_uint_le (stats.failures, 2);
  ck_assert_uint_ge (stats.last_sync_time, time (NULL) - 60);
  ck_assert_uint_le (stats.last_sync_time, time (NULL));
  ck_assert_uint_eq (fake_get (&f, &f.calls), stats.syncs + stats.failures);

  remap_sync_stop (s);
  remap_sync_free (s);
  fake_destroy (&f);
}
END_TEST

/* Many writers marking and waiting at once: each returns once its own
 * change is durable, and the thread writes fewer times than there
 * were changes.
 */
struct hammer {
  struct remap_sync *s;
  struct fake *f;
  int failures;
};

static void *
hammer_thread (void *vp)
{
  struct hammer *h = vp;

  for (int i = 0; i < 200; i++) {
    uint64_t gen = remap_sync_mark_changed (h->s);
    if (remap_sync_wait (h->s, gen) == -1)
      __atomic_fetch_add (&h->failures, 1, __ATOMIC_RELAXED);
  }
  return NULL;
}

START_TEST (test_many_writers)
{
  struct fake f;
  struct hammer h;
  pthread_t threads[8];

  fake_init (&f);
  h.s = new_sync (&f);
  h.f = &f;
  h.failures = 0;
  ck_assert_int_eq (remap_sync_start (h.s), 0);
  for (int i = 0; i < 8; i++)
    ck_assert_int_eq (pthread_create (&threads[i], NULL, hammer_thread, &h),
                      0);
  for (int i = 0; i < 8; i++)
    join_by_deadline (threads[i], "a writer");
  ck_assert_int_eq (h.failures, 0);
  ck_assert (!remap_sync_is_dirty (h.s));
  ck_assert_uint_le (fake_get (&f, &f.calls), 8 * 200);
  remap_sync_free (h.s);
  fake_destroy (&f);
}
END_TEST

static Suite *
sync_suite (void)
{
  Suite *s = suite_create ("sync");
  TCase *tc = tcase_create ("core");

  tcase_set_timeout (tc, 30);
  tcase_add_test (tc, test_inline_without_thread);
  tcase_add_test (tc, test_wait_returns_after_write);
  tcase_add_test (tc, test_coalesce);
  tcase_add_test (tc, test_failure_then_retry);
  tcase_add_test (tc, test_older_failure_not_mine);
  tcase_add_test (tc, test_stop_during_blocked_write);
  tcase_add_test (tc, test_stop_racing_write);
  tcase_add_test (tc, test_stop_idempotent);
  tcase_add_test (tc, test_stats);
  tcase_add_test (tc, test_many_writers);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (sync_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
