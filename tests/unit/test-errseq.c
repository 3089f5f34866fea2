/* nbdkit-remap unit tests: writeback errors of the store, which one
 * party's flush can hear for another party's writes (errseq.c; issue
 * 10, "Errors that appear only at flush").
 *
 * The store is a memdisk whose chosen sectors fail at writeback, as a
 * page cache over a failing disk does: the write succeeds, the next
 * flush (whoever makes it) drops it and fails once.  The sync thread's
 * table write is run in the test's thread (remap_sync_now), so every
 * interleaving is fixed.
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "device.h"
#include "format.h"
#include "extdev.h"
#include "memdisk.h"
#include "metadata.h"
#include "recovery.h"
#include "stubs.h"

#define SS EXTDEV_SS

static unsigned char
read_sector (struct extdev *fx, uint64_t sector)
{
  unsigned char buf[SS];
  int err;

  ck_assert_int_eq (remap_device_pread (fx->dev, &fx->disk->io, buf, SS,
                                        sector * SS, 0, &err), 0);
  for (int i = 1; i < SS; i++)
    ck_assert_uint_eq (buf[i], buf[0]);
  return buf[0];
}

/* Sector s moved to a spare (its origin write failed), durably: from
 * now on its writes go to the store.  Returns the spare's sector in
 * the store.
 */
static uint64_t
remap_sector (struct extdev *fx, uint64_t s, unsigned char byte)
{
  struct remap_entry e;
  int err;

  memdisk_fail_write (fx->disk, s);
  ck_assert_int_eq (extdev_write_sector (fx, s, byte, 0, &err), 0);
  ck_assert (remap_table_lookup (fx->dev->table, s, &e));
  ck_assert_uint_eq (e.state, REMAP_STATE_REMAPPED);
  ck_assert_int_eq (remap_device_flush (fx->dev, &fx->disk->io, &err), 0);
  return remap_spare_where (fx->dev, &e, s * SS) / SS;
}

/* External store: a client's write goes to a spare; the sync thread's
 * flush of the spare file hears that write's writeback error; the
 * client's flush must fail (it used to succeed, the data gone), and
 * only once.
 */
START_TEST (test_sync_hears_spare_error)
{
  struct extdev fx;
  uint64_t spare;
  int err;

  extdev_open (&fx);
  spare = remap_sector (&fx, 3, 0x33);
  memdisk_fail_writeback (fx.store, spare);
  ck_assert_int_eq (extdev_write_sector (&fx, 3, 0x44, 0, &err), 0);

  /* The table changed for some other reason: the sync thread writes
   * it, and its first flush (spare data first) hears the error.
   */
  remap_sync_mark_changed (fx.dev->sync);
  ck_assert_int_eq (remap_sync_now (fx.dev->sync), -1);
  ck_assert_uint_eq (read_sector (&fx, 3), 0x33);   /* 0x44 is gone */

  err = 0;
  ck_assert_int_eq (remap_device_flush (fx.dev, &fx.disk->io, &err), -1);
  ck_assert_int_eq (err, EIO);
  /* Told once: the next flush covers nothing lost. */
  ck_assert_int_eq (remap_device_flush (fx.dev, &fx.disk->io, &err), 0);
  /* And a write after it is kept as usual. */
  ck_assert_int_eq (extdev_write_sector (&fx, 3, 0x55, 0, &err), 0);
  ck_assert_int_eq (remap_device_flush (fx.dev, &fx.disk->io, &err), 0);
  ck_assert_uint_eq (read_sector (&fx, 3), 0x55);
  extdev_free (&fx);
}
END_TEST

/* An error heard while every spare write was covered by a good flush
 * is owed to no one: later flushes succeed.
 */
START_TEST (test_covered_error_not_owed)
{
  struct extdev fx;
  int err;

  extdev_open (&fx);
  remap_sector (&fx, 3, 0x33);
  ck_assert_int_eq (extdev_write_sector (&fx, 3, 0x44, 0, &err), 0);
  ck_assert_int_eq (remap_device_flush (fx.dev, &fx.disk->io, &err), 0);
  /* The sync's flush fails, with nothing of the clients unflushed. */
  fx.store->flush_fail = true;
  remap_sync_mark_changed (fx.dev->sync);
  ck_assert_int_eq (remap_sync_now (fx.dev->sync), -1);
  fx.store->flush_fail = false;
  ck_assert_int_eq (remap_device_flush (fx.dev, &fx.disk->io, &err), 0);
  ck_assert_uint_eq (read_sector (&fx, 3), 0x44);
  extdev_free (&fx);
}
END_TEST

/* Another party's flush of the store, as a FUA spare write makes it,
 * run just before each of the table write's own flushes; it hears the
 * writeback error of the copy just written.  Each sector failing at
 * writeback is good again after its error, so the hook fails the
 * other copy's sectors again once the first copy is dropped.
 */
struct other_flush {
  struct memdisk *store;
  uint64_t table_units[2 * REMAP_COPIES];
  int dropped;                  /* copies whose writes it dropped */
  bool inside;
};

static void
arm (struct other_flush *o)
{
  for (int i = 0; i < 2 * REMAP_COPIES; i++)
    memdisk_fail_writeback (o->store, o->table_units[i]);
}

static void
other_party_flushes (struct memdisk *d, void *vp)
{
  struct other_flush *o = vp;
  int err;

  if (o->inside || o->dropped == REMAP_COPIES)
    return;
  o->inside = true;
  if (d->io.flush (d->io.opaque, &err) == -1) {
    ck_assert_int_eq (err, EIO);
    if (++o->dropped < REMAP_COPIES)
      arm (o);
  }
  o->inside = false;
}

START_TEST (test_table_error_heard_by_other_flush)
{
  struct extdev fx;
  struct other_flush o = { 0 };
  struct remap_load_result lr;
  bool found = false;
  int err;

  extdev_open (&fx);
  remap_sector (&fx, 3, 0x33);
  o.store = fx.store;
  for (int i = 0; i < REMAP_COPIES; i++) {
    uint64_t header_offset, table_offset;
    remap_copy_offsets (&fx.dev->md.geo, i, fx.dev->md.location[i],
                        &header_offset, &table_offset);
    o.table_units[2 * i] = header_offset / SS;
    o.table_units[2 * i + 1] = table_offset / SS;
  }
  arm (&o);
  fx.store->before_flush = other_party_flushes;
  fx.store->before_flush_opaque = &o;

  /* A new remap: its table write is the one whose data is dropped. */
  memdisk_fail_write (fx.disk, 5);
  ck_assert_int_eq (extdev_write_sector (&fx, 5, 0x55, REMAP_FLAG_FUA, &err), 0);
  ck_assert_int_eq (o.dropped, REMAP_COPIES);
  fx.store->before_flush = NULL;

  /* What a restart would find: the table the sync called durable. */
  remap_metadata_load (&fx.store->io, fx.store->size, false, 0, 0, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_VALID);
  ck_assert_uint_eq (lr.header.generation, fx.dev->md.generation);
  for (uint64_t i = 0; i < lr.header.entry_count; i++)
    found |= lr.entries[i].sector == 5 &&
      lr.entries[i].state == REMAP_STATE_REMAPPED;
  free (lr.entries);
  ck_assert_msg (found, "sector 5 is not in the table on the store");
  extdev_free (&fx);
}
END_TEST

static void
other_party_flushes_once (struct memdisk *d, void *vp)
{
  int *dropped = vp;
  int err;

  d->before_flush = NULL;
  if (d->io.flush (d->io.opaque, &err) == -1)
    (*dropped)++;
}

/* A FUA write to a remapped sector, on a spare file (which makes FUA
 * a write and an fdatasync): another party's flush runs first and
 * hears the error of the FUA data.  The FUA write must not succeed
 * with its data gone: it fails on that spare, and the data path moves
 * the sector to another spare.
 */
START_TEST (test_fua_spare_error_heard_by_other_flush)
{
  struct extdev fx;
  struct remap_entry e;
  uint64_t spare;
  int dropped = 0, err;

  extdev_open (&fx);
  spare = remap_sector (&fx, 3, 0x33);
  fx.store->io.can_fua = true;  /* as the spare file's store */
  memdisk_fail_writeback (fx.store, spare);
  fx.store->before_flush = other_party_flushes_once;
  fx.store->before_flush_opaque = &dropped;

  ck_assert_int_eq (extdev_write_sector (&fx, 3, 0x44, REMAP_FLAG_FUA, &err), 0);
  ck_assert_int_eq (dropped, 1);
  ck_assert (remap_table_lookup (fx.dev->table, 3, &e));
  ck_assert_uint_eq (e.state, REMAP_STATE_REMAPPED);
  ck_assert_uint_ne (remap_spare_where (fx.dev, &e, 3 * SS) / SS, spare);
  ck_assert_uint_eq (read_sector (&fx, 3), 0x44);
  extdev_free (&fx);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("errseq");
  TCase *tc = tcase_create ("errseq");
  SRunner *sr;
  int failed;

  tcase_set_timeout (tc, 60);
  tcase_add_test (tc, test_sync_hears_spare_error);
  tcase_add_test (tc, test_covered_error_not_owed);
  tcase_add_test (tc, test_table_error_heard_by_other_flush);
  tcase_add_test (tc, test_fua_spare_error_heard_by_other_flush);
  suite_add_tcase (s, tc);
  sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
