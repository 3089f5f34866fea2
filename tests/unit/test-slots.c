/* nbdkit-remap unit tests: counter slots are given back when threads
 * exit (counters.c).
 *
 * nbdkit starts worker threads for each connection and ends them when
 * the connection closes.  Here batches of short-lived threads stand
 * for connections, one after another, more threads in all than there
 * are slots: every thread must still get a slot of its own (else its
 * requests take the shared atomics, the slow path), the counters must
 * add up to what the threads did, and a drain must still wait for a
 * window opened in a slot that another thread owned before.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>

#include "device.h"
#include "extdev.h"
#include "memdisk.h"
#include "sector.h"
#include "stubs.h"

#define SS EXTDEV_SS
#define DISK_SIZE EXTDEV_DISK_SIZE
/* nbdkit's default number of worker threads per connection. */
#define BATCH 16
/* Connections, one after the other: 96 threads for 64 slots. */
#define ROUNDS 6
#define WRITES_PER_THREAD 5
/* How long a window stays open watching for a drain that does not
 * wait for it: a drain that does not wait ends in microseconds.  Only
 * a bug can make the test fail.
 */
#define WATCH_MS 2000

/* One worker thread of a connection. */
struct worker {
  struct extdev *fx;
  pthread_barrier_t *all_alive;
  unsigned index;               /* over all rounds */
  struct remap_counter_slot *slot;  /* what its windows used */
  int failed_writes;
};

static void *
worker_run (void *vp)
{
  struct worker *w = vp;
  struct remap_device *dev = w->fx->dev;
  unsigned char buf[SS];
  unsigned side;
  int err;

  for (int i = 0; i < WRITES_PER_THREAD; i++) {
    memset (buf, (w->index + i) & 0xff, SS);
    if (remap_device_pwrite (dev, &w->fx->disk->io, buf, SS,
                             (uint64_t) (w->index * WRITES_PER_THREAD + i)
                             * SS % (DISK_SIZE / 2), 0, &err) == -1)
      w->failed_writes++;
  }
  w->slot = remap_window_open (dev, REMAP_WINDOW_WALK, &side);
  remap_window_close (dev, w->slot, REMAP_WINDOW_WALK, side);
  /* The whole connection is alive at once, as nbdkit's workers are:
   * sixteen threads, sixteen slots.
   */
  pthread_barrier_wait (w->all_alive);
  return NULL;
}

START_TEST (test_reconnecting_clients)
{
  struct extdev fx;
  struct worker workers[ROUNDS * BATCH];
  pthread_t threads[BATCH];
  pthread_barrier_t all_alive;
  uint64_t writes0, bytes0, unslotted;
  unsigned owned0, owned;

  extdev_open (&fx);
  writes0 = remap_device_counter (fx.dev, REMAP_COUNTER_WRITES);
  bytes0 = remap_device_counter (fx.dev, REMAP_COUNTER_BYTES_WRITTEN);
  remap_counters_slot_stats (fx.dev, &owned0, &unslotted);
  ck_assert_uint_eq (unslotted, 0);
  ck_assert_int_eq (pthread_barrier_init (&all_alive, NULL, BATCH), 0);

  for (unsigned round = 0; round < ROUNDS; round++) {
    struct worker *batch = &workers[round * BATCH];
    uint64_t done = (uint64_t) (round + 1) * BATCH * WRITES_PER_THREAD;

    for (unsigned t = 0; t < BATCH; t++) {
      batch[t] = (struct worker) { .fx = &fx, .all_alive = &all_alive,
                                   .index = round * BATCH + t };
      ck_assert_int_eq (pthread_create (&threads[t], NULL, worker_run,
                                        &batch[t]), 0);
    }
    for (unsigned t = 0; t < BATCH; t++)
      pthread_join (threads[t], NULL);

    /* (a) Every thread of this connection had a slot of its own. */
    for (unsigned t = 0; t < BATCH; t++) {
      ck_assert_int_eq (batch[t].failed_writes, 0);
      ck_assert_msg (batch[t].slot != NULL,
                     "connection %u: thread %u found no free counter slot "
                     "(%u threads so far, %d slots)", round + 1, t,
                     (round + 1) * BATCH, REMAP_COUNTER_SLOTS);
      for (unsigned u = 0; u < t; u++)
        ck_assert_ptr_ne (batch[t].slot, batch[u].slot);
    }
    remap_counters_slot_stats (fx.dev, &owned, &unslotted);
    ck_assert_uint_eq (unslotted, 0);
    ck_assert_uint_eq (owned, owned0);

    /* (b) Nothing counted twice or lost, slots given back or not. */
    ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_WRITES),
                       writes0 + done);
    ck_assert_uint_eq (remap_device_counter (fx.dev,
                                             REMAP_COUNTER_BYTES_WRITTEN),
                       bytes0 + done * SS);
  }

  pthread_barrier_destroy (&all_alive);
  extdev_free (&fx);
}
END_TEST

/* A drain must wait for a window opened in a slot that a thread that
 * has exited owned before.
 */
static sem_t in_window;
static struct remap_counter_slot *first_slot;
static bool drain_done, drained_while_open;

static void *
first_owner (void *vp)
{
  struct extdev *fx = vp;
  unsigned char buf[SS] = { 1 };
  unsigned side;
  int err;

  ck_assert_int_eq (remap_device_pwrite (fx->dev, &fx->disk->io, buf, SS, 0,
                                         0, &err), 0);
  first_slot = remap_window_open (fx->dev, REMAP_WINDOW_WRITE, &side);
  remap_window_close (fx->dev, first_slot, REMAP_WINDOW_WRITE, side);
  return NULL;
}

static void *
next_owner (void *vp)
{
  struct extdev *fx = vp;
  struct remap_counter_slot *slot;
  unsigned side;

  slot = remap_count_write_open (fx->dev, SS, &side);
  ck_assert_ptr_eq (slot, first_slot);
  sem_post (&in_window);
  for (int ms = 0; ms < WATCH_MS; ms++) {
    const struct timespec ts = { .tv_nsec = 1000000 };
    if (__atomic_load_n (&drain_done, __ATOMIC_ACQUIRE)) {
      drained_while_open = true;
      break;
    }
    nanosleep (&ts, NULL);
  }
  remap_window_close (fx->dev, slot, REMAP_WINDOW_WRITE, side);
  return NULL;
}

START_TEST (test_drain_waits_in_reused_slot)
{
  struct extdev fx;
  pthread_t thread;
  uint64_t writes0;

  extdev_open (&fx);
  writes0 = remap_device_counter (fx.dev, REMAP_COUNTER_WRITES);
  ck_assert_int_eq (pthread_create (&thread, NULL, first_owner, &fx), 0);
  pthread_join (thread, NULL);
  ck_assert_ptr_nonnull (first_slot);

  ck_assert_int_eq (sem_init (&in_window, 0, 0), 0);
  ck_assert_int_eq (pthread_create (&thread, NULL, next_owner, &fx), 0);
  while (sem_wait (&in_window) == -1 && errno == EINTR)
    ;
  remap_windows_drain (fx.dev, REMAP_WINDOW_WRITE);
  __atomic_store_n (&drain_done, true, __ATOMIC_RELEASE);
  pthread_join (thread, NULL);
  ck_assert_msg (!drained_while_open,
                 "a drain ended while a write window was open in a slot "
                 "taken over from a thread that exited");
  /* The second owner went on counting in the first one's slot. */
  ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_WRITES),
                     writes0 + 2);
  sem_destroy (&in_window);
  extdev_free (&fx);
}
END_TEST

/* A thread that moves to another device gives its slot in the first
 * one back; a thread that exits after its device was freed touches
 * neither that device nor one opened since (perhaps at the same
 * address): the sanitizer builds see any access to the freed one.
 */
static pthread_barrier_t step, step2;

static void *
moving_thread (void *vp)
{
  struct extdev *fx = vp;
  unsigned char buf[SS] = { 2 };
  int err;

  ck_assert_int_eq (remap_device_pwrite (fx[0].dev, &fx[0].disk->io, buf, SS,
                                         0, 0, &err), 0);
  pthread_barrier_wait (&step);         /* 1: owns a slot in fx[0] */
  pthread_barrier_wait (&step);         /* 2: fx[1] is open */
  ck_assert_int_eq (remap_device_pwrite (fx[1].dev, &fx[1].disk->io, buf, SS,
                                         0, 0, &err), 0);
  pthread_barrier_wait (&step);         /* 3: owns a slot in fx[1] */
  pthread_barrier_wait (&step);         /* 4: fx[1] freed, fx[2] open */
  return NULL;
}

static void *
counting_thread (void *vp)
{
  struct extdev *fx = vp;
  unsigned char buf[SS] = { 3 };
  int err;

  ck_assert_int_eq (remap_device_pwrite (fx->dev, &fx->disk->io, buf, SS,
                                         0, 0, &err), 0);
  pthread_barrier_wait (&step2);        /* owns a slot in fx[2] */
  pthread_barrier_wait (&step2);        /* the moving thread has exited */
  return NULL;
}

START_TEST (test_devices_come_and_go)
{
  struct extdev fx[3];
  pthread_t mover, counter;
  unsigned owned, owned0[3];
  uint64_t unslotted;

  ck_assert_int_eq (pthread_barrier_init (&step, NULL, 2), 0);
  ck_assert_int_eq (pthread_barrier_init (&step2, NULL, 2), 0);
  extdev_open (&fx[0]);
  remap_counters_slot_stats (fx[0].dev, &owned0[0], &unslotted);
  ck_assert_int_eq (pthread_create (&mover, NULL, moving_thread, fx), 0);
  pthread_barrier_wait (&step);         /* 1 */
  remap_counters_slot_stats (fx[0].dev, &owned, &unslotted);
  ck_assert_uint_eq (owned, owned0[0] + 1);

  extdev_open (&fx[1]);
  remap_counters_slot_stats (fx[1].dev, &owned0[1], &unslotted);
  pthread_barrier_wait (&step);         /* 2 */
  pthread_barrier_wait (&step);         /* 3 */
  remap_counters_slot_stats (fx[0].dev, &owned, &unslotted);
  ck_assert_uint_eq (owned, owned0[0]);
  remap_counters_slot_stats (fx[1].dev, &owned, &unslotted);
  ck_assert_uint_eq (owned, owned0[1] + 1);

  /* The device goes while a thread still owns a slot in it. */
  extdev_free (&fx[1]);
  extdev_open (&fx[2]);
  remap_counters_slot_stats (fx[2].dev, &owned0[2], &unslotted);
  ck_assert_int_eq (pthread_create (&counter, NULL, counting_thread,
                                    &fx[2]), 0);
  pthread_barrier_wait (&step2);
  pthread_barrier_wait (&step);         /* 4: the mover exits */
  pthread_join (mover, NULL);
  remap_counters_slot_stats (fx[2].dev, &owned, &unslotted);
  ck_assert_msg (owned == owned0[2] + 1, "the exit of a thread of a freed "
                 "device gave back a slot of another device");
  pthread_barrier_wait (&step2);
  pthread_join (counter, NULL);
  remap_counters_slot_stats (fx[2].dev, &owned, &unslotted);
  ck_assert_uint_eq (owned, owned0[2]);
  ck_assert_uint_eq (unslotted, 0);

  extdev_free (&fx[2]);
  extdev_free (&fx[0]);
  pthread_barrier_destroy (&step);
  pthread_barrier_destroy (&step2);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("slots");
  TCase *tc = tcase_create ("slots");
  SRunner *sr;
  int failed;

  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_reconnecting_clients);
  tcase_add_test (tc, test_drain_waits_in_reused_slot);
  tcase_add_test (tc, test_devices_come_and_go);
  suite_add_tcase (s, tc);
  sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
