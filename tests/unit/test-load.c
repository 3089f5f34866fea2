/* nbdkit-remap unit tests: loading tables larger than one read chunk
 * (remap_metadata_load reads, checksums and decodes a table 16384
 * entries at a time), and what a load believes of a header: nothing
 * past the end of the store.
 *
 * Each test writes real copies with remap_metadata_write to a memdisk
 * spare store, then damages them, and checks the load against what
 * was written: the entries come back unchanged across chunk
 * boundaries; a flipped byte in a later chunk makes that copy a
 * checksum mismatch; entries out of order across a chunk boundary,
 * under a good checksum, are impossible entries; a header claiming
 * more entries than the store can hold, or spares past its end, is
 * refused as past the end.
 */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "format.h"
#include "memdisk.h"
#include "metadata.h"
#include "stubs.h"

#define SS 512
#define SPARES 40000                    /* capacity 81024 entries */
#define DISK_SIZE (256 * 1024 * 1024)   /* 524288 sectors */
#define N 50000                         /* entries: four chunks */

struct fixture {
  struct memdisk *store;
  struct remap_metadata md;
  struct remap_entry *entries;
};

/* Formats a spare store and writes N entries: REMAPPED (spare i) for
 * every third sector, then PENDING ones after them.
 */
static void
setup (struct fixture *fx, bool in_order)
{
  char why[256];
  bool degraded;
  int err;

  memset (fx, 0, sizeof *fx);
  ck_assert_int_eq (remap_geometry_compute (&fx->md.geo, false, DISK_SIZE,
                                            SS, SPARES, why, sizeof why), 0);
  fx->store = memdisk_new (fx->md.geo.region_size, SS);
  fx->md.store = &fx->store->io;
  ck_assert_int_eq (remap_metadata_format (&fx->md, &err), 0);
  fx->entries = calloc (N, sizeof *fx->entries);
  ck_assert_ptr_nonnull (fx->entries);
  for (uint32_t i = 0; i < N; i++)
    fx->entries[i] = (struct remap_entry) {
      .sector = (uint64_t) i * 3,
      .spare = i < SPARES / 2 ? i : REMAP_NO_SPARE,
      .state = i < SPARES / 2 ? REMAP_STATE_REMAPPED : REMAP_STATE_PENDING,
    };
  if (!in_order)                /* first entry of chunk 2 goes back */
    fx->entries[16384].sector = fx->entries[16383].sector;
  ck_assert_int_eq (remap_metadata_write (&fx->md, fx->entries, N,
                                          &degraded, &err), 0);
  ck_assert (!degraded);
}

static void
teardown (struct fixture *fx)
{
  memdisk_free (fx->store);
  free (fx->entries);
}

START_TEST (test_big_table_round_trip)
{
  struct fixture fx;
  struct remap_load_result lr;

  setup (&fx, true);
  remap_metadata_load (&fx.store->io, fx.store->size, false, 0, 0, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_VALID);
  ck_assert (!lr.needs_repair);
  ck_assert_uint_eq (lr.header.entry_count, N);
  ck_assert_mem_eq (lr.entries, fx.entries, N * sizeof *lr.entries);
  free (lr.entries);
  teardown (&fx);
}
END_TEST

START_TEST (test_flip_in_later_chunk)
{
  struct fixture fx;
  struct remap_load_result lr;

  setup (&fx, true);
  /* A byte of entry 40000 (chunk 3) of copy A. */
  fx.store->data[fx.md.geo.table_offset[0] + 40000 * REMAP_ENTRY_BYTES] ^= 1;
  remap_metadata_load (&fx.store->io, fx.store->size, false, 0, 0, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_VALID);
  ck_assert_int_eq (lr.copy[0].status, REMAP_DECODE_BAD_CHECKSUM);
  ck_assert_int_eq (lr.copy[1].status, REMAP_DECODE_OK);
  ck_assert (lr.needs_repair);
  ck_assert_mem_eq (lr.entries, fx.entries, N * sizeof *lr.entries);
  free (lr.entries);
  teardown (&fx);
}
END_TEST

START_TEST (test_disorder_across_chunks)
{
  struct fixture fx;
  struct remap_load_result lr;

  setup (&fx, false);
  remap_metadata_load (&fx.store->io, fx.store->size, false, 0, 0, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_DAMAGED);
  ck_assert_int_eq (lr.copy[0].status, REMAP_DECODE_BAD_ENTRIES);
  ck_assert_int_eq (lr.copy[1].status, REMAP_DECODE_BAD_ENTRIES);
  ck_assert_ptr_null (lr.entries);
  teardown (&fx);
}
END_TEST

/* The store cut after header A and part of table A: the header's
 * geometry (checksummed, consistent) and entry count are believed
 * only as far as the store's size.
 */
START_TEST (test_header_past_end)
{
  struct fixture fx;
  struct remap_load_result lr;
  uint64_t cut;

  setup (&fx, true);
  cut = fx.md.geo.table_offset[0] + 1000 * REMAP_ENTRY_BYTES;
  remap_metadata_load (&fx.store->io, cut, false, 0, 0, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_DAMAGED);
  ck_assert_int_eq (lr.copy[0].status, REMAP_DECODE_PAST_END);
  ck_assert_ptr_null (lr.entries);
  /* Cut after table A, before the spares end: still refused, the
   * spares would read as zeros.
   */
  cut = fx.md.geo.spare_offset + (uint64_t) SPARES / 2 * SS;
  remap_metadata_load (&fx.store->io, cut, false, 0, 0, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_DAMAGED);
  ck_assert_int_eq (lr.copy[0].status, REMAP_DECODE_PAST_END);
  /* Cut just before header B: copy B is lost, copy A is used. */
  cut = fx.md.geo.header_offset[1];
  remap_metadata_load (&fx.store->io, cut, false, 0, 0, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_VALID);
  ck_assert_int_eq (lr.copy[1].status, REMAP_DECODE_PAST_END);
  ck_assert (lr.needs_repair);
  free (lr.entries);
  teardown (&fx);
}
END_TEST

static Suite *
load_suite (void)
{
  Suite *s = suite_create ("load");
  TCase *tc = tcase_create ("load");

  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_big_table_round_trip);
  tcase_add_test (tc, test_flip_in_later_chunk);
  tcase_add_test (tc, test_disorder_across_chunks);
  tcase_add_test (tc, test_header_past_end);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (load_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
