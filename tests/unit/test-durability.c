/* nbdkit-remap unit tests: what a flush, a FUA write and an unmap
 * promise while other requests run (issue 10, items 5, 6 and 10).
 *
 * External mode: the origin and the store are two memdisks, so the
 * store's flushes can be held, made to fail, and counted apart.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "device.h"
#include "extdev.h"
#include "memdisk.h"
#include "stubs.h"

#define SS EXTDEV_SS
#define DEADLINE_SECONDS 20

/* Sector 3 moved to a spare: from now on its writes go to the store. */
static void
remap_sector_3 (struct extdev *fx)
{
  struct remap_entry e;
  int err;

  memdisk_fail_write (fx->disk, 3);
  ck_assert_int_eq (extdev_write_sector (fx, 3, 0x33, 0, &err), 0);
  ck_assert (remap_table_lookup (fx->dev->table, 3, &e));
  ck_assert_uint_eq (e.state, REMAP_STATE_REMAPPED);
}

static void
nap_ms (unsigned ms)
{
  struct timespec ts = { .tv_sec = ms / 1000,
                         .tv_nsec = ms % 1000 * 1000000L };
  nanosleep (&ts, NULL);
}

/* A call in a thread, and what it returned. */
struct call {
  struct extdev *fx;
  pthread_t thread;
  int r, err;
  unsigned store_flushes_done;  /* when it returned */
  bool done;
};

static void *
flush_thread (void *vp)
{
  struct call *c = vp;

  c->r = remap_device_flush (c->fx->dev, &c->fx->disk->io, &c->err);
  pthread_mutex_lock (&c->fx->store->lock);
  c->store_flushes_done = c->fx->store->flushes_done;
  pthread_mutex_unlock (&c->fx->store->lock);
  __atomic_store_n (&c->done, true, __ATOMIC_RELEASE);
  return NULL;
}

static void
start_call (struct call *c, struct extdev *fx, void *(*fn) (void *))
{
  memset (c, 0, sizeof *c);
  c->fx = fx;
  ck_assert_int_eq (pthread_create (&c->thread, NULL, fn, c), 0);
}

/* Item 5: a flush that begins while another one's store flush runs
 * waits for a store flush of its own, and sees its error.
 */
START_TEST (test_concurrent_flushes)
{
  struct extdev fx;
  struct call a, b;
  int err;

  extdev_open (&fx);
  remap_sector_3 (&fx);
  ck_assert_int_eq (extdev_write_sector (&fx, 3, 0x44, 0, &err), 0);

  fx.store->flush_hold = true;
  fx.store->flush_fail = true;
  start_call (&a, &fx, flush_thread);
  memdisk_wait_flushes (fx.store, 1);
  start_call (&b, &fx, flush_thread);
  /* Give b time to start, so it overlaps a's store flush (if it does
   * not, it must flush on its own anyway: the checks hold either way).
   */
  nap_ms (100);
  memdisk_release_flushes (fx.store);
  pthread_join (a.thread, NULL);
  pthread_join (b.thread, NULL);

  ck_assert_int_eq (a.r, -1);
  ck_assert_int_eq (a.err, EIO);
  ck_assert_msg (b.store_flushes_done >= 1,
                 "the second flush returned before the first one's "
                 "store flush finished");
  ck_assert_msg (b.r == -1 && b.err == EIO,
                 "the second flush missed the store's error (r=%d)", b.r);
  /* The error is not sticky: once the store flushes again, so do we. */
  fx.store->flush_fail = false;
  ck_assert_int_eq (remap_device_flush (fx.dev, &fx.disk->io, &err), 0);
  extdev_free (&fx);
}
END_TEST

static void *
slow_spare_write_thread (void *vp)
{
  struct call *c = vp;

  c->r = extdev_write_sector (c->fx, 3, 0x55, 0, &c->err);
  return NULL;
}

/* Item 5: a spare write that is in flight while a flush runs, and
 * acknowledged before the next flush begins, is covered by a store
 * flush that began after it was done.
 */
START_TEST (test_flush_after_spare_write)
{
  struct extdev fx;
  struct call w;
  unsigned before;
  int err;

  extdev_open (&fx);
  remap_sector_3 (&fx);
  ck_assert_int_eq (remap_device_flush (fx.dev, &fx.disk->io, &err), 0);

  fx.store->write_delay_us = 300000;
  start_call (&w, &fx, slow_spare_write_thread);
  nap_ms (50);                  /* w is inside its store write */
  ck_assert_int_eq (remap_device_flush (fx.dev, &fx.disk->io, &err), 0);
  pthread_join (w.thread, NULL);
  ck_assert_int_eq (w.r, 0);
  fx.store->write_delay_us = 0;

  before = fx.store->flushes;
  ck_assert_int_eq (remap_device_flush (fx.dev, &fx.disk->io, &err), 0);
  ck_assert_msg (fx.store->flushes > before,
                 "a flush after an acknowledged spare write did not flush "
                 "the store");
  extdev_free (&fx);
}
END_TEST

static void *
unmap_thread (void *vp)
{
  struct call *c = vp;

  c->r = remap_device_unmap (c->fx->dev, &c->fx->disk->io, 3, &c->err);
  __atomic_store_n (&c->done, true, __ATOMIC_RELEASE);
  return NULL;
}

/* Item 6: a FUA write to a sector whose unmap is not durable yet
 * returns only once the table without the entry is durable (else a
 * crash brings back the spare, without this write).
 */
START_TEST (test_fua_after_unmap)
{
  struct extdev fx;
  struct remap_entry e;
  struct call u;
  int err;

  extdev_open (&fx);
  remap_sector_3 (&fx);
  memdisk_heal (fx.disk);
  /* The unmap's table write is slow. */
  fx.store->write_delay_us = 200000;
  start_call (&u, &fx, unmap_thread);
  while (remap_table_lookup (fx.dev->table, 3, &e))
    nap_ms (1);
  ck_assert_int_eq (extdev_write_sector (&fx, 3, 0x66, REMAP_FLAG_FUA, &err), 0);
  ck_assert_msg (!remap_sync_is_dirty (fx.dev->sync),
                 "a FUA write returned before the unmap was durable");
  pthread_join (u.thread, NULL);
  ck_assert_int_eq (u.r, 0);
  fx.store->write_delay_us = 0;
  extdev_free (&fx);
}
END_TEST

static void *
read_5_thread (void *vp)
{
  struct call *c = vp;
  unsigned char buf[SS];

  c->r = remap_device_pread (c->fx->dev, &c->fx->disk->io, buf, SS, 5 * SS,
                             0, &c->err);
  __atomic_store_n (&c->done, true, __ATOMIC_RELEASE);
  return NULL;
}

/* Item 10: while sector 3 is being unmapped (its origin flush held),
 * I/O on another remapped sector goes on.
 */
START_TEST (test_unmap_stalls_only_its_unit)
{
  struct extdev fx;
  struct call u, r;
  time_t deadline;
  int err;

  extdev_open (&fx);
  remap_sector_3 (&fx);
  memdisk_fail_write (fx.disk, 5);
  ck_assert_int_eq (extdev_write_sector (&fx, 5, 0x77, 0, &err), 0);
  memdisk_heal (fx.disk);

  fx.disk->flush_hold = true;
  start_call (&u, &fx, unmap_thread);
  memdisk_wait_flushes (fx.disk, 1);
  start_call (&r, &fx, read_5_thread);
  deadline = time (NULL) + DEADLINE_SECONDS;
  while (!__atomic_load_n (&r.done, __ATOMIC_ACQUIRE) &&
         time (NULL) < deadline)
    nap_ms (10);
  ck_assert_msg (!__atomic_load_n (&u.done, __ATOMIC_ACQUIRE),
                 "the unmap finished with its flush held");
  ck_assert_msg (__atomic_load_n (&r.done, __ATOMIC_ACQUIRE),
                 "a read of another remapped sector waited for an unmap");
  memdisk_release_flushes (fx.disk);
  pthread_join (u.thread, NULL);
  pthread_join (r.thread, NULL);
  ck_assert_int_eq (u.r, 0);
  ck_assert_int_eq (r.r, 0);
  extdev_free (&fx);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("durability");
  TCase *tc = tcase_create ("durability");
  SRunner *sr;
  int failed;

  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_concurrent_flushes);
  tcase_add_test (tc, test_flush_after_spare_write);
  tcase_add_test (tc, test_fua_after_unmap);
  tcase_add_test (tc, test_unmap_stalls_only_its_unit);
  suite_add_tcase (s, tc);
  sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
