/* nbdkit-remap unit tests: may a disk without metadata be formatted
 * (probe.c)?
 *
 * Against a model: on random disks (blank, or with a few random bytes
 * set anywhere), internal mode may format exactly the disks whose
 * every byte is zero, and never writes; without extents nothing may
 * be formatted.  Then the diagnoses: a header left by a grow or a
 * shrink is named as such, whichever sectors around it fail to read,
 * and the blank check reads nothing at all.
 */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "memdisk.h"
#include "metadata.h"
#include "probe.h"
#include "stubs.h"

#define SS 4096
#define DISK (8 * 1024 * 1024)

static struct remap_options
internal_opts (void)
{
  struct remap_options opt;

  remap_options_init (&opt);
  opt.internal = true;
  opt.store_name = "the disk";
  return opt;
}

static int
may_format (struct memdisk *d)
{
  struct remap_options opt = internal_opts ();

  stub_reset ();
  return remap_probe_may_format (&opt, &d->io, d->size, d->size, SS, 64);
}

START_TEST (test_random_model)
{
  srand (12345);
  for (int round = 0; round < 200; round++) {
    struct memdisk *d = memdisk_new (DISK, SS);
    int nr_bytes = rand () % 3;   /* 0: blank */
    bool extents = rand () % 4 != 0;

    for (int i = 0; i < nr_bytes; i++)
      d->data[(uint64_t) rand () * 7919 % DISK] = 1 + rand () % 255;
    bool blank = true;
    for (size_t i = 0; i < DISK && blank; i++)
      blank = d->data[i] == 0;
    if (!extents)
      d->io.extent = NULL;
    int r = may_format (d);
    ck_assert_msg ((r == 0) == (blank && extents),
                   "round %d: blank %d extents %d, may_format %d: %s",
                   round, blank, extents, r, stub_last_error);
    if (r == -1)
      ck_assert_msg (strstr (stub_last_error, "remap-spare=FILE") &&
                     strstr (stub_last_error, "remap-format=yes"),
                     "no ways out: %s", stub_last_error);
    ck_assert_uint_eq (d->pwrites, 0);
    ck_assert_uint_eq (d->zeroes, 0);
    memdisk_free (d);
  }
}
END_TEST

/* The blank check asks for extents only. */
START_TEST (test_blank_reads_nothing)
{
  struct memdisk *d = memdisk_new (DISK, SS);
  bool blank, known;
  int err;

  ck_assert_int_eq (remap_probe_blank (&d->io, DISK, &blank, &known, &err),
                    0);
  ck_assert (blank && known);
  ck_assert_uint_eq (d->preads, 0);
  memdisk_free (d);
}
END_TEST

/* Formats a region for a disk of old_size bytes on a memdisk of
 * new_size (the start of the bigger one), as a resize would leave it.
 */
static struct memdisk *
resized_disk (uint64_t old_size, uint64_t new_size)
{
  struct memdisk *d = memdisk_new (old_size > new_size ? old_size
                                   : new_size, SS);
  struct remap_metadata md;
  char why[256];
  int err;

  memset (&md, 0, sizeof md);
  md.store = &d->io;
  ck_assert_int_eq (remap_geometry_compute (&md.geo, true, old_size, SS, 64,
                                            why, sizeof why), 0);
  ck_assert_int_eq (remap_metadata_format (&md, &err), 0);
  d->data[0] = 0x42;            /* the user's data */
  d->pwrites = 0;
  d->size = new_size;
  return d;
}

static void
check_diagnosis (uint64_t old_size, uint64_t new_size, const char *word)
{
  /* With every sector of the old region's end failing to read in
   * turn, the diagnosis stays the same, or at worst generic: never a
   * read error.
   */
  for (int bad = -1; bad < 3; bad++) {
    struct memdisk *d = resized_disk (old_size, new_size);
    if (bad >= 0)
      memdisk_fail_read (d, old_size / SS - 1 - bad * 20);
    ck_assert_int_eq (may_format (d), -1);
    ck_assert_msg (strstr (stub_last_error, word) != NULL,
                   "bad %d: no \"%s\" in: %s", bad, word, stub_last_error);
    ck_assert_msg (strstr (stub_last_error, "Input/output") == NULL,
                   "a read error stopped the probe: %s", stub_last_error);
    ck_assert_uint_eq (d->pwrites, 0);
    memdisk_free (d);
  }
}

START_TEST (test_grown_small)
{
  check_diagnosis (DISK, DISK + 1024 * 1024, "was it grown?");
}
END_TEST

/* Grown by more than the 64 MiB that the tail scan covers: found at
 * the end of the data extents.
 */
START_TEST (test_grown_far)
{
  check_diagnosis (DISK, DISK + 80 * 1024 * 1024, "was it grown?");
}
END_TEST

START_TEST (test_shrunk)
{
  check_diagnosis (DISK, DISK - 64 * 1024, "shrank");
}
END_TEST

static Suite *
probe_suite (void)
{
  Suite *s = suite_create ("probe");
  TCase *tc = tcase_create ("core");

  tcase_add_test (tc, test_random_model);
  tcase_add_test (tc, test_blank_reads_nothing);
  tcase_add_test (tc, test_grown_small);
  tcase_add_test (tc, test_grown_far);
  tcase_add_test (tc, test_shrunk);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (probe_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
