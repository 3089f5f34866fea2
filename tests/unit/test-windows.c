/* nbdkit-remap unit tests: the write windows of threads beyond the
 * counter slots (sector.h, counters.c).
 *
 * Such a thread counts its window in one of two shared counters, the
 * one a drain does not wait for at the moment.  A thread stopped
 * between choosing the counter and counting itself, while two drains
 * flip the choice twice, must still be waited for by the next drain,
 * or a move could read a sector before a fast-path write to it lands.
 * The stop is made exact: the page of the counters is write-protected,
 * so the thread faults on counting itself, after it chose; the fault
 * handler runs the first drain and lets the thread go on.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "device.h"
#include "format.h"
#include "memdisk.h"
#include "sector.h"
#include "stubs.h"

#define SS 512
#define DISK_SIZE (1024 * 1024)
#define NR_SPARES 16
/* How long the writer keeps its window open watching for the second
 * drain to end: on an idle machine it ends in microseconds when it
 * does not wait.  Only a bug can make the test fail.
 */
#define WATCH_MS 2000

static struct remap_device *dev;
static void *counters_page;
static long page_size;
static bool first_drain_ran;
static uint64_t round_seen = UINT64_MAX, round_now, round_done;
static sem_t in_window;

/* The writer faulted on counting its window: it has chosen the side.
 * The first drain runs now (it flips the side and finds nobody on the
 * old one), then the writer counts itself on the side it chose.
 */
static void
on_fault (int sig, siginfo_t *si, void *uc)
{
  const char *a = si->si_addr, *w = (const char *) dev->windows_unslotted;

  (void) sig; (void) uc;
  if (a < w || a >= w + sizeof dev->windows_unslotted)
    abort ();
  mprotect (counters_page, page_size, PROT_READ | PROT_WRITE);
  remap_windows_drain (dev, REMAP_WINDOW_WRITE);
  first_drain_ran = true;
}

static void *
writer (void *vp)
{
  unsigned side = 0;
  struct remap_counter_slot *slot;
  bool *drained_while_open = vp;

  /* Takes (and fails to take) a slot: from now on opening a window
   * writes nothing but the shared counter.
   */
  slot = remap_window_open (dev, REMAP_WINDOW_WRITE, &side);
  ck_assert_ptr_null (slot);
  remap_window_close (dev, slot, REMAP_WINDOW_WRITE, side);

  ck_assert_int_eq (mprotect (counters_page, page_size, PROT_READ), 0);
  slot = remap_window_open (dev, REMAP_WINDOW_WRITE, &side);
  /* The look at the table: the move of round 1 is not there yet. */
  round_seen = __atomic_load_n (&round_now, __ATOMIC_ACQUIRE);
  sem_post (&in_window);
  for (int ms = 0; ms < WATCH_MS; ms++) {
    const struct timespec ts = { .tv_nsec = 1000000 };
    if (__atomic_load_n (&round_done, __ATOMIC_ACQUIRE) > round_seen) {
      *drained_while_open = true;
      break;
    }
    nanosleep (&ts, NULL);
  }
  remap_window_close (dev, slot, REMAP_WINDOW_WRITE, side);
  return NULL;
}

START_TEST (test_stale_side)
{
  struct memdisk *disk, *store;
  struct remap_options opt;
  struct remap_geometry g;
  struct sigaction sa;
  pthread_t thread;
  bool drained_while_open = false;
  char why[256];

  stub_reset ();
  disk = memdisk_new (DISK_SIZE, SS);
  ck_assert_ptr_nonnull (disk);
  remap_options_init (&opt);
  opt.sector_size = SS;
  opt.spare_bytes = NR_SPARES * SS;
  opt.store_name = "spare.img";
  ck_assert_int_eq (remap_geometry_compute (&g, false, DISK_SIZE, SS,
                                            NR_SPARES, why, sizeof why), 0);
  store = memdisk_new (g.region_size, SS);
  ck_assert_ptr_nonnull (store);
  dev = remap_device_open (&opt, &store->io, store->size, disk->size);
  ck_assert_msg (dev != NULL, "open failed: %s", stub_last_error);

  /* Every slot taken, as by the threads of earlier connections. */
  dev->nr_slots = REMAP_COUNTER_SLOTS;
  dev->slots_owned = ~UINT64_C (0);
  page_size = sysconf (_SC_PAGESIZE);
  counters_page = (void *) ((uintptr_t) dev->windows_unslotted &
                            ~(uintptr_t) (page_size - 1));
  memset (&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO;
  ck_assert_int_eq (sigaction (SIGSEGV, &sa, NULL), 0);
  ck_assert_int_eq (sem_init (&in_window, 0, 0), 0);

  ck_assert_int_eq (pthread_create (&thread, NULL, writer,
                                    &drained_while_open), 0);
  while (sem_wait (&in_window) == -1 && errno == EINTR)
    ;
  ck_assert (first_drain_ran);
  ck_assert_uint_eq (round_seen, 0);
  /* Round 1: a move sets its entry, then waits for the windows. */
  __atomic_store_n (&round_now, 1, __ATOMIC_SEQ_CST);
  remap_windows_drain (dev, REMAP_WINDOW_WRITE);
  __atomic_store_n (&round_done, 1, __ATOMIC_SEQ_CST);
  pthread_join (thread, NULL);
  ck_assert_msg (!drained_while_open,
                 "a drain ended while a write window that did not see its "
                 "move was open");

  signal (SIGSEGV, SIG_DFL);
  remap_device_free (dev);
  memdisk_free (disk);
  memdisk_free (store);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("windows");
  TCase *tc = tcase_create ("windows");
  SRunner *sr;
  int failed;

  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_stale_side);
  suite_add_tcase (s, tc);
  sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
