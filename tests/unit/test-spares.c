/* nbdkit-remap unit tests: the spare allocator (spares.c).
 *
 * Covers allocation of the lowest free spare, release and reuse
 * (including below the allocator's hint and across 64-bit words),
 * ENOSPC when the pool is full, mark_used refusing duplicates and
 * out-of-range spares, retired spares never coming back, and the
 * used / retired / total counts.
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <check.h>

#include "spares.h"

static struct remap_spares *
new_spares (uint32_t count)
{
  struct remap_spares *s = remap_spares_new (count);

  ck_assert_ptr_nonnull (s);
  ck_assert_uint_eq (remap_spares_total (s), count);
  ck_assert_uint_eq (remap_spares_used (s), 0);
  ck_assert_uint_eq (remap_spares_retired (s), 0);
  return s;
}

static uint32_t
alloc_ok (struct remap_spares *s)
{
  uint32_t spare = UINT32_MAX;

  ck_assert_int_eq (remap_spares_alloc (s, &spare), 0);
  return spare;
}

static void
expect_full (struct remap_spares *s)
{
  uint32_t spare = 12345;

  errno = 0;
  ck_assert_int_eq (remap_spares_alloc (s, &spare), -1);
  ck_assert_int_eq (errno, ENOSPC);
}

START_TEST (test_lowest_first)
{
  /* Sizes around the 64-bit word boundaries. */
  static const uint32_t counts[] = { 1, 2, 63, 64, 65, 127, 128, 129, 1000 };

  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
    struct remap_spares *s = new_spares (counts[c]);

    for (uint32_t i = 0; i < counts[c]; i++) {
      ck_assert_uint_eq (alloc_ok (s), i);
      ck_assert_uint_eq (remap_spares_used (s), i + 1);
    }
    expect_full (s);
    expect_full (s);
    ck_assert_uint_eq (remap_spares_used (s), counts[c]);

    /* The last one, then the first one, come back. */
    remap_spares_release (s, counts[c] - 1);
    ck_assert_uint_eq (remap_spares_used (s), counts[c] - 1);
    ck_assert_uint_eq (alloc_ok (s), counts[c] - 1);
    remap_spares_release (s, 0);
    ck_assert_uint_eq (alloc_ok (s), 0);
    expect_full (s);
    remap_spares_free (s);
  }
}
END_TEST

START_TEST (test_release_reuse)
{
  struct remap_spares *s = new_spares (200);

  for (int i = 0; i < 150; i++)
    alloc_ok (s);
  /* Released in any order, they come back lowest first. */
  remap_spares_release (s, 130);
  remap_spares_release (s, 70);
  remap_spares_release (s, 5);
  remap_spares_release (s, 64);
  ck_assert_uint_eq (remap_spares_used (s), 146);
  ck_assert_uint_eq (alloc_ok (s), 5);
  ck_assert_uint_eq (alloc_ok (s), 64);
  ck_assert_uint_eq (alloc_ok (s), 70);
  ck_assert_uint_eq (alloc_ok (s), 130);
  ck_assert_uint_eq (alloc_ok (s), 150);
  ck_assert_uint_eq (remap_spares_used (s), 151);

  /* Releasing a free or nonexistent spare changes nothing. */
  remap_spares_release (s, 199);
  remap_spares_release (s, 200);
  remap_spares_release (s, UINT32_MAX);
  ck_assert_uint_eq (remap_spares_used (s), 151);
  ck_assert_uint_eq (alloc_ok (s), 151);
  remap_spares_free (s);
}
END_TEST

/* After the pool was full (and ENOSPC), a release must still be found. */
START_TEST (test_release_after_full)
{
  struct remap_spares *s = new_spares (130);

  for (int i = 0; i < 130; i++)
    alloc_ok (s);
  expect_full (s);
  remap_spares_release (s, 129);
  ck_assert_uint_eq (alloc_ok (s), 129);
  expect_full (s);
  remap_spares_release (s, 3);
  remap_spares_release (s, 100);
  ck_assert_uint_eq (alloc_ok (s), 3);
  ck_assert_uint_eq (alloc_ok (s), 100);
  expect_full (s);
  remap_spares_free (s);
}
END_TEST

START_TEST (test_mark_used)
{
  struct remap_spares *s = new_spares (100);

  ck_assert_int_eq (remap_spares_mark_used (s, 0), 0);
  ck_assert_int_eq (remap_spares_mark_used (s, 2), 0);
  ck_assert_int_eq (remap_spares_mark_used (s, 64), 0);
  ck_assert_int_eq (remap_spares_mark_used (s, 99), 0);
  ck_assert_uint_eq (remap_spares_used (s), 4);

  /* Two sectors pointing at one spare. */
  ck_assert_int_eq (remap_spares_mark_used (s, 2), -1);
  ck_assert_int_eq (remap_spares_mark_used (s, 99), -1);
  /* Out of range. */
  ck_assert_int_eq (remap_spares_mark_used (s, 100), -1);
  ck_assert_int_eq (remap_spares_mark_used (s, 128), -1);
  ck_assert_int_eq (remap_spares_mark_used (s, UINT32_MAX), -1);
  ck_assert_uint_eq (remap_spares_used (s), 4);

  /* Allocation skips what was marked. */
  ck_assert_uint_eq (alloc_ok (s), 1);
  ck_assert_uint_eq (alloc_ok (s), 3);
  for (uint32_t i = 4; i < 64; i++)
    ck_assert_uint_eq (alloc_ok (s), i);
  ck_assert_uint_eq (alloc_ok (s), 65);
  ck_assert_uint_eq (remap_spares_used (s), 4 + 2 + 60 + 1);
  remap_spares_free (s);
}
END_TEST

START_TEST (test_retire)
{
  struct remap_spares *s = new_spares (10);
  uint32_t *list = NULL;

  for (int i = 0; i < 4; i++)
    alloc_ok (s);
  /* A used spare that fails: no longer used, retired forever. */
  remap_spares_retire (s, 1);
  ck_assert_uint_eq (remap_spares_used (s), 3);
  ck_assert_uint_eq (remap_spares_retired (s), 1);
  remap_spares_release (s, 1);          /* must not free it */
  ck_assert_uint_eq (remap_spares_retired (s), 1);
  ck_assert_uint_eq (alloc_ok (s), 4);

  /* Retiring twice counts once; retiring a free spare takes it. */
  remap_spares_retire (s, 1);
  remap_spares_retire (s, 7);
  remap_spares_retire (s, 10);          /* out of range: ignored */
  ck_assert_uint_eq (remap_spares_retired (s), 2);
  ck_assert_uint_eq (remap_spares_used (s), 4);

  ck_assert_int_eq (remap_spares_retired_list (s, &list), 2);
  ck_assert_uint_eq (list[0], 1);
  ck_assert_uint_eq (list[1], 7);
  free (list);

  ck_assert_uint_eq (alloc_ok (s), 5);
  ck_assert_uint_eq (alloc_ok (s), 6);
  ck_assert_uint_eq (alloc_ok (s), 8);
  ck_assert_uint_eq (alloc_ok (s), 9);
  expect_full (s);
  ck_assert_uint_eq (remap_spares_used (s), 8);
  ck_assert_uint_eq (remap_spares_used (s) + remap_spares_retired (s),
                     remap_spares_total (s));
  remap_spares_free (s);
}
END_TEST

START_TEST (test_mark_retired)
{
  struct remap_spares *s = new_spares (200);
  uint32_t *list = NULL;

  ck_assert_int_eq (remap_spares_mark_used (s, 0), 0);
  ck_assert_int_eq (remap_spares_mark_retired (s, 1), 0);
  ck_assert_int_eq (remap_spares_mark_retired (s, 150), 0);
  ck_assert_int_eq (remap_spares_mark_retired (s, 199), 0);
  /* Taken already (used or retired), or out of range. */
  ck_assert_int_eq (remap_spares_mark_retired (s, 0), -1);
  ck_assert_int_eq (remap_spares_mark_retired (s, 150), -1);
  ck_assert_int_eq (remap_spares_mark_retired (s, 200), -1);
  ck_assert_int_eq (remap_spares_mark_used (s, 1), -1);
  ck_assert_uint_eq (remap_spares_used (s), 1);
  ck_assert_uint_eq (remap_spares_retired (s), 3);

  ck_assert_int_eq (remap_spares_retired_list (s, &list), 3);
  ck_assert_uint_eq (list[0], 1);
  ck_assert_uint_eq (list[1], 150);
  ck_assert_uint_eq (list[2], 199);
  free (list);

  ck_assert_uint_eq (alloc_ok (s), 2);
  remap_spares_free (s);

  /* An empty list. */
  s = new_spares (5);
  list = NULL;
  ck_assert_int_eq (remap_spares_retired_list (s, &list), 0);
  free (list);
  remap_spares_free (s);
}
END_TEST

/* Random operations against a simple model. */
START_TEST (test_random_model)
{
  const uint32_t count = 300;
  struct remap_spares *s = new_spares (count);
  unsigned char *taken = calloc (count, 1);
  uint32_t used = 0;

  ck_assert_ptr_nonnull (taken);
  srandom (7);
  for (int op = 0; op < 20000; op++) {
    if (random () % 3) {
      uint32_t want = 0, got;
      while (want < count && taken[want])
        want++;
      if (want == count) {
        if (remap_spares_alloc (s, &got) != -1)
          ck_abort_msg ("op %d: allocated from a full pool", op);
        continue;
      }
      if (remap_spares_alloc (s, &got) == -1 || got != want)
        ck_abort_msg ("op %d: allocated %u, expected %u", op, got, want);
      taken[got] = 1;
      used++;
    }
    else {
      uint32_t victim = random () % count;
      remap_spares_release (s, victim);
      if (taken[victim])
        used--;
      taken[victim] = 0;
    }
    if (remap_spares_used (s) != used)
      ck_abort_msg ("op %d: %u used, expected %u", op,
                    remap_spares_used (s), used);
  }
  free (taken);
  remap_spares_free (s);
}
END_TEST

static Suite *
spares_suite (void)
{
  Suite *s = suite_create ("spares");
  TCase *tc = tcase_create ("core");

  tcase_add_test (tc, test_lowest_first);
  tcase_add_test (tc, test_release_reuse);
  tcase_add_test (tc, test_release_after_full);
  tcase_add_test (tc, test_mark_used);
  tcase_add_test (tc, test_retire);
  tcase_add_test (tc, test_mark_retired);
  tcase_add_test (tc, test_random_model);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (spares_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
