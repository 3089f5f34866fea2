/* nbdkit-remap unit tests: the in-memory remap table (table.c).
 *
 * Covers insert, lookup, next and remove; the lock-free summary
 * (remap_table_may_touch) around the 64-bit word boundaries, its bit
 * being cleared by remove, and the coarse summary of a huge disk;
 * snapshots filtered by state; loading from a sorted array; a table
 * of 1,000,000 entries checked against a reference; and readers
 * running concurrently with a writer that inserts, or that also
 * removes and rewrites entries while the table grows.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>

#include "table.h"

/* Fails the test (without ck_assert's per-call cost, which matters
 * in loops of a million) unless cond holds.
 */
#define require(cond, ...)                                              \
  do {                                                                  \
    if (!(cond))                                                        \
      ck_abort_msg (__VA_ARGS__);                                       \
  } while (0)

static struct remap_table *
new_table (uint64_t nr_sectors)
{
  struct remap_table *t = remap_table_new (nr_sectors);

  ck_assert_ptr_nonnull (t);
  return t;
}

static void
insert (struct remap_table *t, uint64_t sector, uint32_t spare,
        uint32_t state)
{
  struct remap_entry e = { .sector = sector, .spare = spare, .state = state };

  ck_assert_int_eq (remap_table_insert (t, &e), 0);
}

static void
expect_entry (struct remap_table *t, uint64_t sector, uint32_t spare,
              uint32_t state)
{
  struct remap_entry e;

  ck_assert_msg (remap_table_lookup (t, sector, &e),
                 "sector %llu not found", (unsigned long long) sector);
  ck_assert_uint_eq (e.sector, sector);
  ck_assert_uint_eq (e.spare, spare);
  ck_assert_uint_eq (e.state, state);
}

/* 64-bit random numbers from random(). */
static uint64_t
random64 (void)
{
  return (uint64_t) random () << 33 ^ (uint64_t) random () << 11 ^
    (uint64_t) random ();
}

START_TEST (test_basic)
{
  struct remap_table *t = new_table (1000);
  struct remap_entry e;

  ck_assert_uint_eq (remap_table_count (t), 0);
  ck_assert (!remap_table_lookup (t, 0, &e));
  ck_assert (!remap_table_next (t, 0, 999, &e));

  /* Out of order on purpose. */
  insert (t, 500, 2, REMAP_STATE_REMAPPED);
  insert (t, 10, 0, REMAP_STATE_REMAPPED);
  insert (t, 999, REMAP_NO_SPARE, REMAP_STATE_PENDING);
  insert (t, 20, 1, REMAP_STATE_RESERVED);
  ck_assert_uint_eq (remap_table_count (t), 4);
  expect_entry (t, 10, 0, REMAP_STATE_REMAPPED);
  expect_entry (t, 20, 1, REMAP_STATE_RESERVED);
  expect_entry (t, 500, 2, REMAP_STATE_REMAPPED);
  expect_entry (t, 999, REMAP_NO_SPARE, REMAP_STATE_PENDING);
  ck_assert (!remap_table_lookup (t, 11, &e));
  ck_assert (!remap_table_lookup (t, 0, &e));

  /* next: the lowest entry in [first, last]. */
  ck_assert (remap_table_next (t, 0, 999, &e));
  ck_assert_uint_eq (e.sector, 10);
  ck_assert (remap_table_next (t, 11, 999, &e));
  ck_assert_uint_eq (e.sector, 20);
  ck_assert (remap_table_next (t, 20, 20, &e));
  ck_assert_uint_eq (e.sector, 20);
  ck_assert (!remap_table_next (t, 21, 499, &e));
  ck_assert (remap_table_next (t, 21, 500, &e));
  ck_assert_uint_eq (e.sector, 500);
  ck_assert (remap_table_next (t, 501, 999, &e));
  ck_assert_uint_eq (e.sector, 999);
  ck_assert (!remap_table_next (t, 0, 9, &e));

  /* Insert of an existing sector replaces it. */
  insert (t, 500, 7, REMAP_STATE_REMAPPED);
  ck_assert_uint_eq (remap_table_count (t), 4);
  expect_entry (t, 500, 7, REMAP_STATE_REMAPPED);

  /* Out of range. */
  e = (struct remap_entry) { .sector = 1000, .spare = 0,
                             .state = REMAP_STATE_REMAPPED };
  errno = 0;
  ck_assert_int_eq (remap_table_insert (t, &e), -1);
  ck_assert_int_eq (errno, ERANGE);
  ck_assert_uint_eq (remap_table_count (t), 4);

  /* Remove. */
  ck_assert (remap_table_remove (t, 20));
  ck_assert (!remap_table_remove (t, 20));
  ck_assert (!remap_table_remove (t, 21));
  ck_assert_uint_eq (remap_table_count (t), 3);
  ck_assert (!remap_table_lookup (t, 20, &e));
  ck_assert (remap_table_next (t, 11, 999, &e));
  ck_assert_uint_eq (e.sector, 500);
  ck_assert (remap_table_remove (t, 10));
  ck_assert (remap_table_remove (t, 999));
  ck_assert (remap_table_remove (t, 500));
  ck_assert_uint_eq (remap_table_count (t), 0);
  ck_assert (!remap_table_next (t, 0, 999, &e));
  ck_assert (!remap_table_may_touch (t, 0, 999));

  ck_assert_uint_gt (remap_table_memory (t), 0);
  remap_table_free (t);
}
END_TEST

START_TEST (test_may_touch_empty)
{
  struct remap_table *t = new_table (1 << 20);

  ck_assert (!remap_table_may_touch (t, 0, 0));
  ck_assert (!remap_table_may_touch (t, 0, (1 << 20) - 1));
  ck_assert (!remap_table_may_touch (t, 12345, 12345));
  remap_table_free (t);
}
END_TEST

/* With one entry, may_touch is exact for every range inside
 * [0, 300) (the summary is one bit per sector on a disk this size),
 * across the word boundaries at 64, 128, 192 and 256.
 */
static void
check_exact (struct remap_table *t, uint64_t entry)
{
  for (uint64_t first = 0; first < 300; first++)
    for (uint64_t last = first; last < 300; last++) {
      bool want = first <= entry && entry <= last;
      if (remap_table_may_touch (t, first, last) != want)
        ck_abort_msg ("entry %llu: may_touch (%llu, %llu) should be %s",
                      (unsigned long long) entry,
                      (unsigned long long) first, (unsigned long long) last,
                      want ? "true" : "false");
    }
}

START_TEST (test_may_touch_word_boundaries)
{
  static const uint64_t sectors[] = { 0, 1, 62, 63, 64, 65, 127, 128, 129,
                                      191, 192, 255, 256, 299 };
  struct remap_table *t = new_table (300);

  for (size_t i = 0; i < sizeof sectors / sizeof sectors[0]; i++) {
    insert (t, sectors[i], 0, REMAP_STATE_REMAPPED);
    check_exact (t, sectors[i]);
    ck_assert (remap_table_remove (t, sectors[i]));
    /* The bit is cleared again. */
    ck_assert (!remap_table_may_touch (t, 0, 299));
  }

  /* Two entries either side of a word boundary. */
  insert (t, 63, 0, REMAP_STATE_REMAPPED);
  insert (t, 128, 1, REMAP_STATE_REMAPPED);
  ck_assert (remap_table_may_touch (t, 63, 63));
  ck_assert (remap_table_may_touch (t, 0, 63));
  ck_assert (remap_table_may_touch (t, 63, 128));
  ck_assert (remap_table_may_touch (t, 60, 70));
  ck_assert (!remap_table_may_touch (t, 64, 127));
  ck_assert (!remap_table_may_touch (t, 0, 62));
  ck_assert (!remap_table_may_touch (t, 129, 299));
  ck_assert (remap_table_may_touch (t, 127, 128));
  ck_assert (remap_table_may_touch (t, 128, 299));
  ck_assert (remap_table_remove (t, 63));
  ck_assert (!remap_table_may_touch (t, 0, 127));
  ck_assert (remap_table_may_touch (t, 0, 299));
  remap_table_free (t);
}
END_TEST

START_TEST (test_remove_clears_summary)
{
  struct remap_table *t = new_table (10000);

  insert (t, 64, 0, REMAP_STATE_REMAPPED);
  insert (t, 65, 1, REMAP_STATE_REMAPPED);
  ck_assert (remap_table_remove (t, 64));
  ck_assert (!remap_table_may_touch (t, 64, 64));
  ck_assert (remap_table_may_touch (t, 65, 65));
  ck_assert (remap_table_remove (t, 65));
  ck_assert (!remap_table_may_touch (t, 0, 9999));
  /* And a re-insert sets it again. */
  insert (t, 64, 0, REMAP_STATE_PENDING);
  ck_assert (remap_table_may_touch (t, 64, 64));
  remap_table_free (t);
}
END_TEST

/* A disk of 2^30 sectors has a coarse summary: may_touch can say yes
 * for a neighbour, but must never say no for a sector with an entry,
 * and a chunk keeps its bit while any entry in it remains.
 */
START_TEST (test_coarse_summary)
{
  const uint64_t n = UINT64_C (1) << 30;
  struct remap_table *t = new_table (n);
  struct remap_entry e;
  uint64_t s;

  ck_assert (!remap_table_may_touch (t, 0, n - 1));
  for (s = 0; s < 300; s += 7) {
    insert (t, s, 0, REMAP_STATE_REMAPPED);
    ck_assert (remap_table_may_touch (t, s, s));
  }
  insert (t, n - 1, 1, REMAP_STATE_REMAPPED);
  ck_assert (remap_table_may_touch (t, n - 1, n - 1));
  ck_assert (remap_table_may_touch (t, n - 10, n - 1));
  for (s = 0; s < 300; s += 7)
    ck_assert (remap_table_may_touch (t, s, s));
  /* Far from every entry. */
  ck_assert (!remap_table_may_touch (t, n / 2, n / 2 + 1000));

  /* Neighbours 1000 and 1001 share a chunk; removing one keeps the
   * other visible, removing both clears it.
   */
  insert (t, 1000, 2, REMAP_STATE_REMAPPED);
  insert (t, 1001, 3, REMAP_STATE_REMAPPED);
  ck_assert (remap_table_remove (t, 1000));
  ck_assert (remap_table_may_touch (t, 1001, 1001));
  ck_assert (remap_table_lookup (t, 1001, &e));
  ck_assert (remap_table_remove (t, 1001));
  ck_assert (!remap_table_may_touch (t, 900, 1100));
  remap_table_free (t);
}
END_TEST

START_TEST (test_snapshot)
{
  struct remap_table *t = new_table (100);
  struct remap_entry *out = NULL;
  ssize_t n;

  insert (t, 50, 1, REMAP_STATE_REMAPPED);
  insert (t, 10, REMAP_NO_SPARE, REMAP_STATE_PENDING);
  insert (t, 30, 2, REMAP_STATE_RESERVED);
  insert (t, 20, 0, REMAP_STATE_REMAPPED);
  insert (t, 90, REMAP_NO_SPARE, REMAP_STATE_PENDING);

  n = remap_table_snapshot (t, REMAP_STATE_REMAPPED, &out);
  ck_assert_int_eq (n, 2);
  ck_assert_uint_eq (out[0].sector, 20);
  ck_assert_uint_eq (out[0].spare, 0);
  ck_assert_uint_eq (out[1].sector, 50);
  ck_assert_uint_eq (out[1].spare, 1);
  free (out);

  n = remap_table_snapshot (t, REMAP_STATE_REMAPPED | REMAP_STATE_PENDING,
                            &out);
  ck_assert_int_eq (n, 4);
  ck_assert_uint_eq (out[0].sector, 10);
  ck_assert_uint_eq (out[0].state, REMAP_STATE_PENDING);
  ck_assert_uint_eq (out[1].sector, 20);
  ck_assert_uint_eq (out[2].sector, 50);
  ck_assert_uint_eq (out[3].sector, 90);
  free (out);

  n = remap_table_snapshot (t, REMAP_STATE_RESERVED, &out);
  ck_assert_int_eq (n, 1);
  ck_assert_uint_eq (out[0].sector, 30);
  free (out);

  n = remap_table_snapshot (t, 0, &out);
  ck_assert_int_eq (n, 0);
  free (out);

  n = remap_table_snapshot (t, ~UINT32_C (0), &out);
  ck_assert_int_eq (n, 5);
  for (ssize_t i = 1; i < n; i++)
    ck_assert_uint_lt (out[i-1].sector, out[i].sector);
  free (out);
  remap_table_free (t);

  /* Of an empty table. */
  t = new_table (100);
  out = NULL;
  ck_assert_int_eq (remap_table_snapshot (t, ~UINT32_C (0), &out), 0);
  free (out);
  remap_table_free (t);
}
END_TEST

START_TEST (test_load)
{
  struct remap_table *t = new_table (1000);
  struct remap_entry e;
  const struct remap_entry good[] = {
    { .sector = 3, .spare = 0, .state = REMAP_STATE_REMAPPED },
    { .sector = 64, .spare = 1, .state = REMAP_STATE_REMAPPED },
    { .sector = 65, .spare = REMAP_NO_SPARE, .state = REMAP_STATE_PENDING },
    { .sector = 999, .spare = 2, .state = REMAP_STATE_REMAPPED },
  };
  const struct remap_entry unsorted[] = {
    { .sector = 5, .spare = 0, .state = REMAP_STATE_REMAPPED },
    { .sector = 4, .spare = 1, .state = REMAP_STATE_REMAPPED },
  };
  const struct remap_entry duplicate[] = {
    { .sector = 5, .spare = 0, .state = REMAP_STATE_REMAPPED },
    { .sector = 5, .spare = 1, .state = REMAP_STATE_REMAPPED },
  };
  const struct remap_entry too_far[] = {
    { .sector = 1000, .spare = 0, .state = REMAP_STATE_REMAPPED },
  };

  /* Loading replaces whatever was there, summary bits included. */
  insert (t, 500, 9, REMAP_STATE_REMAPPED);
  ck_assert_int_eq (remap_table_load (t, good, 4), 0);
  ck_assert_uint_eq (remap_table_count (t), 4);
  ck_assert (!remap_table_lookup (t, 500, &e));
  ck_assert (!remap_table_may_touch (t, 500, 500));
  ck_assert (!remap_table_may_touch (t, 4, 63));
  for (size_t i = 0; i < 4; i++) {
    expect_entry (t, good[i].sector, good[i].spare, good[i].state);
    ck_assert (remap_table_may_touch (t, good[i].sector, good[i].sector));
  }

  errno = 0;
  ck_assert_int_eq (remap_table_load (t, unsorted, 2), -1);
  ck_assert_int_eq (errno, ERANGE);
  ck_assert_int_eq (remap_table_load (t, duplicate, 2), -1);
  ck_assert_int_eq (remap_table_load (t, too_far, 1), -1);
  /* A refused load leaves the table as it was. */
  ck_assert_uint_eq (remap_table_count (t), 4);
  expect_entry (t, 64, 1, REMAP_STATE_REMAPPED);

  ck_assert_int_eq (remap_table_load (t, good, 0), 0);
  ck_assert_uint_eq (remap_table_count (t), 0);
  ck_assert (!remap_table_may_touch (t, 0, 999));
  remap_table_free (t);
}
END_TEST

/* ---- Large table. ---- */

#define BIG_N 1000000

/* Index of the first reference entry with sector >= s. */
static size_t
ref_lower_bound (const struct remap_entry *ref, size_t n, uint64_t s)
{
  size_t lo = 0, hi = n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (ref[mid].sector < s)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void
check_against_reference (struct remap_table *t, const struct remap_entry *ref,
                         size_t n, uint64_t nr_sectors, int queries)
{
  for (int q = 0; q < queries; q++) {
    uint64_t first, last;
    size_t i;
    struct remap_entry e;
    bool found, want;

    /* Half the queries aim at an entry, half anywhere. */
    if (q % 2 == 0) {
      first = ref[random () % n].sector;
      if (q % 4 == 0 && first > 0)
        first--;
    }
    else
      first = random64 () % nr_sectors;
    last = first + random () % 64;
    if (last >= nr_sectors)
      last = nr_sectors - 1;

    i = ref_lower_bound (ref, n, first);
    found = remap_table_next (t, first, last, &e);
    want = i < n && ref[i].sector <= last;
    require (found == want, "next (%llu, %llu): found %d, expected %d",
             (unsigned long long) first, (unsigned long long) last,
             found, want);
    if (want) {
      require (e.sector == ref[i].sector && e.spare == ref[i].spare &&
               e.state == ref[i].state,
               "next (%llu, %llu) gave sector %llu, expected %llu",
               (unsigned long long) first, (unsigned long long) last,
               (unsigned long long) e.sector,
               (unsigned long long) ref[i].sector);
      require (remap_table_may_touch (t, first, last),
               "may_touch (%llu, %llu) is false but sector %llu is in it",
               (unsigned long long) first, (unsigned long long) last,
               (unsigned long long) ref[i].sector);
    }

    found = remap_table_lookup (t, first, &e);
    want = i < n && ref[i].sector == first;
    require (found == want, "lookup (%llu): found %d, expected %d",
             (unsigned long long) first, found, want);
  }
}

/* Random sorted distinct sectors, with spares and states. */
static struct remap_entry *
make_reference (size_t n, uint64_t nr_sectors)
{
  struct remap_entry *ref = malloc (n * sizeof *ref);
  uint64_t gap = nr_sectors / (n + 1), s = 0;

  ck_assert_ptr_nonnull (ref);
  for (size_t i = 0; i < n; i++) {
    s += 1 + random () % gap;
    ref[i].sector = s;
    if (random () % 3) {
      ref[i].spare = i;
      ref[i].state = REMAP_STATE_REMAPPED;
    }
    else {
      ref[i].spare = REMAP_NO_SPARE;
      ref[i].state = REMAP_STATE_PENDING;
    }
  }
  return ref;
}

START_TEST (test_million)
{
  const uint64_t nr_sectors = UINT64_C (50) * BIG_N;
  struct remap_entry *ref, *snap = NULL;
  struct remap_table *t = new_table (nr_sectors);
  ssize_t n;

  srandom (42);
  ref = make_reference (BIG_N, nr_sectors);
  ck_assert_int_eq (remap_table_load (t, ref, BIG_N), 0);
  ck_assert_uint_eq (remap_table_count (t), BIG_N);
  check_against_reference (t, ref, BIG_N, nr_sectors, 200000);

  n = remap_table_snapshot (t, REMAP_STATE_REMAPPED | REMAP_STATE_PENDING,
                            &snap);
  ck_assert_int_eq (n, BIG_N);
  ck_assert_int_eq (memcmp (snap, ref, BIG_N * sizeof *ref), 0);
  free (snap);

  /* Remove some entries spread over the table and check again. */
  size_t kept = 0;
  for (size_t i = 0; i < BIG_N; i++) {
    if (i % 4999 == 3)
      require (remap_table_remove (t, ref[i].sector), "remove %zu", i);
    else
      ref[kept++] = ref[i];
  }
  ck_assert_uint_eq (remap_table_count (t), kept);
  check_against_reference (t, ref, kept, nr_sectors, 100000);
  free (ref);
  remap_table_free (t);
}
END_TEST

/* The same on a disk with a coarse summary, built by insert. */
START_TEST (test_large_coarse_by_insert)
{
  const uint64_t nr_sectors = UINT64_C (1) << 34;
  const size_t n = 30000;
  struct remap_entry *ref;
  struct remap_table *t = new_table (nr_sectors);

  srandom (43);
  ref = make_reference (n, nr_sectors);
  /* Insert in a scrambled order (a stride coprime to n). */
  for (size_t k = 0, i = 0; k < n; k++, i = (i + 7919) % n)
    require (remap_table_insert (t, &ref[i]) == 0, "insert %zu failed", i);
  ck_assert_uint_eq (remap_table_count (t), n);
  check_against_reference (t, ref, n, nr_sectors, 100000);
  free (ref);
  remap_table_free (t);
}
END_TEST

/* ---- Concurrency. ---- */

#define CONC_N 50000
#define CONC_STRIDE 3
#define CONC_READERS 4

/* order[0..n) = a random permutation of 0..n-1 (seeded: repeatable). */
static void
shuffle (uint32_t *order, uint32_t n, unsigned seed)
{
  srandom (seed);
  for (uint32_t i = 0; i < n; i++)
    order[i] = i;
  for (uint32_t i = n - 1; i > 0; i--) {
    uint32_t j = random () % (i + 1), tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
}

struct concurrent {
  struct remap_table *t;
  uint32_t order[CONC_N];       /* insertion order of k */
  unsigned char inserted[CONC_N]; /* set (atomically) after insert */
  int writer_done;              /* atomic */
  unsigned seed;
  unsigned long checks;
  char failure[256];
};

/* Entry k: sector k*CONC_STRIDE, spare k. */
static void *
reader (void *vp)
{
  struct concurrent *c = vp;
  unsigned seed = __atomic_fetch_add (&c->seed, 1, __ATOMIC_RELAXED);
  unsigned long checks = 0;
  const uint64_t nr = (uint64_t) CONC_N * CONC_STRIDE;
  const struct timespec pause = { .tv_nsec = 1000 };

  while (!__atomic_load_n (&c->writer_done, __ATOMIC_ACQUIRE) ||
         checks < 1000) {
    uint64_t first = rand_r (&seed) % nr;
    uint64_t last = first + rand_r (&seed) % 10;
    uint64_t k0 = (first + CONC_STRIDE - 1) / CONC_STRIDE;
    bool known = k0 < CONC_N && k0 * CONC_STRIDE <= last &&
      __atomic_load_n (&c->inserted[k0], __ATOMIC_ACQUIRE);
    bool touch = remap_table_may_touch (c->t, first, last);
    struct remap_entry e;
    bool found = remap_table_next (c->t, first, last, &e);

    if (found &&
        (e.sector < first || e.sector > last ||
         e.sector % CONC_STRIDE != 0 ||
         e.spare != e.sector / CONC_STRIDE ||
         e.state != REMAP_STATE_REMAPPED)) {
      snprintf (c->failure, sizeof c->failure,
                "next (%llu, %llu) returned a wrong entry: sector %llu "
                "spare %u state %u", (unsigned long long) first,
                (unsigned long long) last, (unsigned long long) e.sector,
                e.spare, e.state);
      break;
    }
    /* An entry inserted before we looked must be seen. */
    if (known && (!touch || !found || e.sector != k0 * CONC_STRIDE)) {
      snprintf (c->failure, sizeof c->failure,
                "sector %llu was inserted but next (%llu, %llu) gave "
                "%s (may_touch %d)",
                (unsigned long long) (k0 * CONC_STRIDE),
                (unsigned long long) first, (unsigned long long) last,
                found ? "another entry" : "nothing", touch);
      break;
    }
    /* Pause now and then, as a real request would for its I/O, so
     * that four readers that never stop leave the writer some CPU.
     */
    if (++checks % 64 == 0)
      nanosleep (&pause, NULL);
  }
  __atomic_fetch_add (&c->checks, checks, __ATOMIC_RELAXED);
  return NULL;
}

START_TEST (test_concurrent_readers)
{
  struct concurrent *c = calloc (1, sizeof *c);
  pthread_t readers[CONC_READERS];
  struct remap_entry *snap = NULL;

  ck_assert_ptr_nonnull (c);
  c->t = new_table ((uint64_t) CONC_N * CONC_STRIDE);
  /* A random permutation, so inserts land everywhere in the array. */
  shuffle (c->order, CONC_N, 44);

  for (int i = 0; i < CONC_READERS; i++)
    ck_assert_int_eq (pthread_create (&readers[i], NULL, reader, c), 0);
  for (uint32_t i = 0; i < CONC_N; i++) {
    uint32_t k = c->order[i];
    struct remap_entry e = { .sector = (uint64_t) k * CONC_STRIDE,
                             .spare = k, .state = REMAP_STATE_REMAPPED };
    require (remap_table_insert (c->t, &e) == 0, "insert %u failed", k);
    __atomic_store_n (&c->inserted[k], 1, __ATOMIC_RELEASE);
  }
  __atomic_store_n (&c->writer_done, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < CONC_READERS; i++)
    pthread_join (readers[i], NULL);

  ck_assert_msg (c->failure[0] == '\0', "%s", c->failure);
  ck_assert_uint_ge (c->checks, CONC_READERS * 1000);
  ck_assert_uint_eq (remap_table_count (c->t), CONC_N);
  ck_assert_int_eq (remap_table_snapshot (c->t, REMAP_STATE_REMAPPED, &snap),
                    CONC_N);
  for (uint32_t k = 0; k < CONC_N; k++)
    require (snap[k].sector == (uint64_t) k * CONC_STRIDE,
             "entry %u is sector %llu", k,
             (unsigned long long) snap[k].sector);
  free (snap);
  remap_table_free (c->t);
  free (c);
}
END_TEST

/* Readers against a writer that grows the table from empty, removes
 * entries, puts them back and rewrites them in place.  Entry k lies at
 * sector k*CONC_STRIDE and is either { spare k, REMAPPED } or
 * { REMAP_NO_SPARE, PENDING }, so a torn read shows as a mismatched
 * pair.  Entries with k % 4 == 0 are never removed once inserted: a
 * reader that knows one is in its range must find it or a lower one.
 */
#define CHURN_N 5000
#define CHURN_ROUNDS 4

struct churn {
  struct remap_table *t;
  uint32_t order[CHURN_N];
  unsigned char stable[CHURN_N]; /* set (atomically) once inserted */
  int writer_done;              /* atomic */
  unsigned seed;
  unsigned long checks;
  char failure[256];
};

static struct remap_entry
churn_entry (uint32_t k, bool pending)
{
  return (struct remap_entry) {
    .sector = (uint64_t) k * CONC_STRIDE,
    .spare = pending ? REMAP_NO_SPARE : k,
    .state = pending ? REMAP_STATE_PENDING : REMAP_STATE_REMAPPED,
  };
}

static void *
churn_reader (void *vp)
{
  struct churn *c = vp;
  unsigned seed = __atomic_fetch_add (&c->seed, 1, __ATOMIC_RELAXED);
  unsigned long checks = 0;
  const uint64_t nr = (uint64_t) CHURN_N * CONC_STRIDE;
  const struct timespec pause = { .tv_nsec = 1000 };

  while (!__atomic_load_n (&c->writer_done, __ATOMIC_ACQUIRE) ||
         checks < 1000) {
    uint64_t first = rand_r (&seed) % nr;
    uint64_t last = first + rand_r (&seed) % 16;
    uint64_t stable = UINT64_MAX;
    struct remap_entry e;
    bool found;

    /* The lowest stable entry in [first, last] known to be there. */
    for (uint64_t k = (first + CONC_STRIDE - 1) / CONC_STRIDE;
         k < CHURN_N && k * CONC_STRIDE <= last; k++)
      if (k % 4 == 0 && __atomic_load_n (&c->stable[k], __ATOMIC_ACQUIRE)) {
        stable = k * CONC_STRIDE;
        break;
      }
    found = remap_table_next (c->t, first, last, &e);
    if (found) {
      uint64_t k = e.sector / CONC_STRIDE;
      bool pending = e.state == REMAP_STATE_PENDING;
      struct remap_entry want = churn_entry (k, pending);
      if (e.sector < first || e.sector > last ||
          e.sector % CONC_STRIDE != 0 || k >= CHURN_N ||
          e.spare != want.spare || e.state != want.state) {
        snprintf (c->failure, sizeof c->failure,
                  "next (%llu, %llu) returned a wrong entry: sector %llu "
                  "spare %u state %u", (unsigned long long) first,
                  (unsigned long long) last, (unsigned long long) e.sector,
                  e.spare, e.state);
        break;
      }
    }
    if (stable != UINT64_MAX && (!found || e.sector > stable)) {
      snprintf (c->failure, sizeof c->failure,
                "sector %llu is in the table but next (%llu, %llu) gave "
                "%s", (unsigned long long) stable,
                (unsigned long long) first, (unsigned long long) last,
                found ? "a higher one" : "nothing");
      break;
    }
    if (++checks % 64 == 0)
      nanosleep (&pause, NULL);
  }
  __atomic_fetch_add (&c->checks, checks, __ATOMIC_RELAXED);
  return NULL;
}

START_TEST (test_concurrent_churn)
{
  struct churn *c = calloc (1, sizeof *c);
  pthread_t readers[CONC_READERS];
  struct remap_entry *snap = NULL;

  ck_assert_ptr_nonnull (c);
  c->t = new_table ((uint64_t) CHURN_N * CONC_STRIDE);
  shuffle (c->order, CHURN_N, 45);

  for (int i = 0; i < CONC_READERS; i++)
    ck_assert_int_eq (pthread_create (&readers[i], NULL, churn_reader, c),
                      0);
  /* Grow from empty: the table outgrows its arrays several times. */
  for (uint32_t i = 0; i < CHURN_N; i++) {
    uint32_t k = c->order[i];
    struct remap_entry e = churn_entry (k, false);
    require (remap_table_insert (c->t, &e) == 0, "insert %u failed", k);
    if (k % 4 == 0)
      __atomic_store_n (&c->stable[k], 1, __ATOMIC_RELEASE);
  }
  for (int round = 0; round < CHURN_ROUNDS; round++) {
    bool pending = round % 2 == 0;
    for (uint32_t i = 0; i < CHURN_N; i++) {
      uint32_t k = c->order[i];
      struct remap_entry e = churn_entry (k, pending);
      if (k % 2 == 1)
        require (remap_table_remove (c->t, e.sector), "remove %u", k);
      else              /* rewritten in place */
        require (remap_table_insert (c->t, &e) == 0, "replace %u", k);
    }
    for (uint32_t i = 0; i < CHURN_N; i++) {
      uint32_t k = c->order[i];
      struct remap_entry e = churn_entry (k, pending);
      if (k % 2 == 1)
        require (remap_table_insert (c->t, &e) == 0, "insert %u", k);
    }
  }
  __atomic_store_n (&c->writer_done, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < CONC_READERS; i++)
    pthread_join (readers[i], NULL);

  ck_assert_msg (c->failure[0] == '\0', "%s", c->failure);
  ck_assert_uint_ge (c->checks, CONC_READERS * 1000);
  ck_assert_int_eq (remap_table_snapshot (c->t, ~UINT32_C (0), &snap),
                    CHURN_N);
  for (uint32_t k = 0; k < CHURN_N; k++) {
    struct remap_entry want = churn_entry (k, CHURN_ROUNDS % 2 == 1);
    require (memcmp (&snap[k], &want, sizeof want) == 0,
             "entry %u is sector %llu spare %u state %u", k,
             (unsigned long long) snap[k].sector, snap[k].spare,
             snap[k].state);
  }
  free (snap);
  remap_table_free (c->t);
  free (c);
}
END_TEST

static Suite *
table_suite (void)
{
  Suite *s = suite_create ("table");
  TCase *tc = tcase_create ("core");
  TCase *big = tcase_create ("large");

  tcase_set_timeout (big, 60);

  tcase_add_test (tc, test_basic);
  tcase_add_test (tc, test_may_touch_empty);
  tcase_add_test (tc, test_may_touch_word_boundaries);
  tcase_add_test (tc, test_remove_clears_summary);
  tcase_add_test (tc, test_coarse_summary);
  tcase_add_test (tc, test_snapshot);
  tcase_add_test (tc, test_load);
  suite_add_tcase (s, tc);

  tcase_add_test (big, test_million);
  tcase_add_test (big, test_large_coarse_by_insert);
  tcase_add_test (big, test_concurrent_readers);
  tcase_add_test (big, test_concurrent_churn);
  suite_add_tcase (s, big);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (table_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
