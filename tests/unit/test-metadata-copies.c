/* nbdkit-remap unit tests: the rule that the only valid copy of the
 * table is never written over in place (remap_metadata_write).
 *
 * When copy A cannot be written anywhere (its home and every free
 * relocation slot fail), copy B, the only one holding the newest
 * durable table, must not be overwritten where it lies: a crash in
 * that write would leave no valid copy.  It goes to a free slot if one
 * takes it, and otherwise stays byte for byte as it was and the update
 * fails with EIO, also on the next try.
 *
 * The crash sweep replays updates in four situations (healthy; A's
 * home failing, A moving to a slot; A failing everywhere; A failing
 * everywhere but a slot freed meanwhile for B) and stops each one
 * after every number of writes, also with the next write torn, then
 * loads the store: it must give the old table or the new one.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "format.h"
#include "memdisk.h"
#include "metadata.h"
#include "stubs.h"

#define SS 512
#define DISK_SIZE (1024 * 1024)
#define SPARES 200

/* take_run for the tests: every run is free, except that slot 0's is
 * refused the first 'refuse_slot0' times it is asked for (its spares
 * busy, then given back, as an unmap would).
 */
struct runs {
  uint32_t slot0_first;
  int refuse_slot0;
};

static int
take_run (void *opaque, uint32_t first, uint32_t count)
{
  struct runs *r = opaque;

  (void) count;
  if (first == r->slot0_first && r->refuse_slot0 > 0) {
    r->refuse_slot0--;
    return -1;
  }
  return 0;
}

static void
release_run (void *opaque, uint32_t first, uint32_t count)
{
  (void) opaque; (void) first; (void) count;
}

static void
md_init (struct remap_metadata *md, struct memdisk *disk, struct runs *runs)
{
  uint32_t n;
  char why[256];

  memset (md, 0, sizeof *md);
  ck_assert_int_eq (remap_geometry_compute (&md->geo, true, DISK_SIZE, SS,
                                            SPARES, why, sizeof why), 0);
  md->store = &disk->io;
  md->take_run = take_run;
  md->release_run = release_run;
  md->run_opaque = runs;
  ck_assert (remap_relocation_slot (&md->geo, 0, &runs->slot0_first, &n));
}

/* n entries, from sector 'from' on; tables from different 'from'
 * differ in every entry.
 */
static void
table_of (struct remap_entry *e, size_t n, uint64_t from)
{
  for (size_t i = 0; i < n; i++)
    e[i] = (struct remap_entry) { .sector = from + 3 * i, .spare = i,
                                  .state = REMAP_STATE_REMAPPED };
}

/* Copy A's home header, and with slots, every slot's header, fail
 * writes.
 */
static void
fail_copy_a (struct memdisk *disk, const struct remap_geometry *geo,
             uint32_t from_slot)
{
  uint32_t first, n;
  uint64_t h, t;

  memdisk_fail_write (disk, geo->header_offset[0] / SS);
  for (uint32_t k = from_slot; remap_relocation_slot (geo, k, &first, &n);
       k++) {
    remap_copy_offsets (geo, 0, k + 1, &h, &t);
    memdisk_fail_write (disk, h / SS);
  }
}

/* The bytes of copy B at its home: header and table. */
static unsigned char *
copy_b_bytes (const struct memdisk *disk, const struct remap_geometry *geo,
              size_t *len)
{
  uint64_t h, t;
  unsigned char *b;

  remap_copy_offsets (geo, 1, REMAP_LOCATION_HOME, &h, &t);
  *len = geo->header_bytes + SS;
  b = malloc (*len);
  ck_assert_ptr_nonnull (b);
  memcpy (b, disk->data + h, geo->header_bytes);
  memcpy (b + geo->header_bytes, disk->data + t, SS);
  return b;
}

static void
expect_loads (struct memdisk *disk, uint64_t generation,
              const struct remap_entry *e, size_t n)
{
  struct remap_load_result lr;

  remap_metadata_load (&disk->io, disk->size, true, SS, SPARES, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_VALID);
  ck_assert_uint_eq (lr.header.generation, generation);
  ck_assert_uint_eq (lr.header.entry_count, n);
  ck_assert (n == 0 || memcmp (lr.entries, e, n * sizeof *e) == 0);
  free (lr.entries);
}

/* A fails everywhere: B keeps its bytes, the update fails with EIO,
 * and so does the next one (the sync thread's retry).
 */
START_TEST (test_sole_copy_not_overwritten)
{
  struct memdisk *disk = memdisk_new (DISK_SIZE, SS);
  struct remap_metadata md;
  struct runs runs = { 0 };
  struct remap_entry e[3];
  unsigned char *before, *after;
  size_t len;
  bool degraded;
  int err = 0;

  table_of (e, 3, 10);
  md_init (&md, disk, &runs);
  ck_assert_int_eq (remap_metadata_format (&md, &err), 0);
  ck_assert_int_eq (remap_metadata_write (&md, e, 1, &degraded, &err), 0);
  ck_assert (!degraded);
  before = copy_b_bytes (disk, &md.geo, &len);

  fail_copy_a (disk, &md.geo, 0);
  for (int attempt = 0; attempt < 2; attempt++) {
    err = 0;
    ck_assert_int_eq (remap_metadata_write (&md, e, 2 + attempt, &degraded,
                                            &err), -1);
    ck_assert_int_eq (err, EIO);
    after = copy_b_bytes (disk, &md.geo, &len);
    ck_assert_msg (memcmp (before, after, len) == 0,
                   "copy B, the only valid copy, was overwritten in place "
                   "(attempt %d)", attempt);
    free (after);
    ck_assert (!md.copy_valid[0]);
    ck_assert (md.copy_valid[1]);
    ck_assert_uint_eq (md.location[1], REMAP_LOCATION_HOME);
    ck_assert_uint_eq (md.generation, 2);
  }
  memdisk_heal (disk);
  expect_loads (disk, 2, e, 1);
  /* Once A can be written again, so can the table. */
  ck_assert_int_eq (remap_metadata_write (&md, e, 3, &degraded, &err), 0);
  ck_assert (!degraded);
  expect_loads (disk, 3, e, 3);
  free (before);
  memdisk_free (disk);
}
END_TEST

/* A fails everywhere, but slot 0 is free by the time B is written: B
 * goes there, and its home keeps the old table.
 */
START_TEST (test_sole_copy_to_slot)
{
  struct memdisk *disk = memdisk_new (DISK_SIZE, SS);
  struct remap_metadata md;
  struct runs runs = { 0 };
  struct remap_entry e[2];
  unsigned char *before, *after;
  size_t len;
  bool degraded;
  int err = 0;

  table_of (e, 2, 10);
  md_init (&md, disk, &runs);
  ck_assert_int_eq (remap_metadata_format (&md, &err), 0);
  ck_assert_int_eq (remap_metadata_write (&md, e, 1, &degraded, &err), 0);
  before = copy_b_bytes (disk, &md.geo, &len);

  fail_copy_a (disk, &md.geo, 1);
  runs.refuse_slot0 = 1;
  ck_assert_int_eq (remap_metadata_write (&md, e, 2, &degraded, &err), 0);
  ck_assert (degraded);
  ck_assert_uint_eq (md.location[1], 1);
  ck_assert (!md.copy_valid[0] && md.copy_valid[1]);
  after = copy_b_bytes (disk, &md.geo, &len);
  ck_assert_msg (memcmp (before, after, len) == 0,
                 "copy B's home was overwritten while it was the only "
                 "valid copy");
  free (after);
  free (before);
  memdisk_heal (disk);
  expect_loads (disk, 3, e, 2);
  memdisk_free (disk);
}
END_TEST

enum situation { HEALTHY, A_MOVES, A_NOWHERE, B_TO_SLOT, NR_SITUATIONS };

/* Prepares the store with generation 2 (one entry) on both copies and
 * the faults of situation s; md and runs are ready for the update.
 */
static struct memdisk *
prepare (enum situation s, struct remap_metadata *md, struct runs *runs,
         const struct remap_entry *old)
{
  struct memdisk *disk = memdisk_new (DISK_SIZE, SS);
  bool degraded;
  int err;

  md_init (md, disk, runs);
  ck_assert_int_eq (remap_metadata_format (md, &err), 0);
  ck_assert_int_eq (remap_metadata_write (md, old, 1, &degraded, &err), 0);
  switch (s) {
  case HEALTHY: case NR_SITUATIONS: break;
  case A_MOVES: memdisk_fail_write (disk, md->geo.header_offset[0] / SS);
    break;
  case A_NOWHERE: fail_copy_a (disk, &md->geo, 0); break;
  case B_TO_SLOT: fail_copy_a (disk, &md->geo, 1); runs->refuse_slot0 = 1;
    break;
  }
  return disk;
}

/* Stops the update of each situation after every number of writes
 * (the next one not done, or torn after its first sector): the store
 * loads the old table or the new one.
 */
START_TEST (test_every_crash_point)
{
  struct remap_entry old[1], e[2];

  table_of (old, 1, 10);
  table_of (e, 2, 11);
  for (int s = 0; s < NR_SITUATIONS; s++) {
    struct remap_metadata md;
    struct runs runs = { 0 };
    struct memdisk *disk = prepare (s, &md, &runs, old);
    unsigned writes_before = disk->pwrites, total;
    bool degraded;
    int err;

    /* Every write the whole update makes, so every point is tried. */
    remap_metadata_write (&md, e, 2, &degraded, &err);
    total = disk->pwrites - writes_before;
    memdisk_free (disk);

    for (unsigned n = 0; n <= total; n++)
      for (int torn = 0; torn < 2; torn++) {
        struct remap_load_result lr;

        runs = (struct runs) { 0 };
        disk = prepare (s, &md, &runs, old);
        disk->torn_bytes = torn ? SS : 0;
        memdisk_fail_after_writes (disk, n);
        remap_metadata_write (&md, e, 2, &degraded, &err);
        memdisk_heal (disk);
        remap_metadata_load (&disk->io, disk->size, true, SS, SPARES, &lr);
        ck_assert_msg (lr.found == REMAP_FOUND_VALID,
                       "situation %d, crash after %u writes%s: no valid "
                       "copy", s, n, torn ? " and a torn one" : "");
        ck_assert_msg ((lr.header.generation == 2 &&
                        lr.header.entry_count == 1) ||
                       (lr.header.generation == 3 &&
                        lr.header.entry_count == 2),
                       "situation %d, crash after %u writes: loaded "
                       "generation %" PRIu64 " with %" PRIu32 " entries",
                       s, n, lr.header.generation, lr.header.entry_count);
        ck_assert (memcmp (lr.entries, lr.header.generation == 2 ? old : e,
                           lr.header.entry_count * sizeof *e) == 0);
        free (lr.entries);
        memdisk_free (disk);
      }
  }
}
END_TEST

static Suite *
copies_suite (void)
{
  Suite *s = suite_create ("metadata-copies");
  TCase *tc = tcase_create ("copies");

  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_sole_copy_not_overwritten);
  tcase_add_test (tc, test_sole_copy_to_slot);
  tcase_add_test (tc, test_every_crash_point);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (copies_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
