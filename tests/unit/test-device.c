/* nbdkit-remap unit tests: the remapped device over in-memory disks
 * (device.c, datapath.c, recovery.c, metadata.c).
 *
 * Internal mode uses one memdisk as both origin and store; external
 * mode a second memdisk as the store.  Covers: formatting a blank
 * disk; a write whose origin sector fails moving to a spare (data
 * reads back through the device and not from the origin; whole,
 * partial and multi-sector writes; through the sync thread and
 * inline); the table being durable when the write returns; persistence
 * across stop/free/reopen; repair of a damaged copy from the other;
 * refusing damaged metadata, a non-blank region and a spare file of
 * another disk; spare exhaustion; two writers racing on one bad
 * sector; zero and trim of a remapped sector going to its spare;
 * failed metadata writes failing the write; metadata copies moving off
 * failing sectors (and back, and an unreadable header B); pending (unreadable)
 * sectors, their persistence and recovery; failing spares retired for
 * good; the short last sector of an external disk; unmapping; and
 * remap_device_walk.  Some tests run the sync thread, others sync
 * inline.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "device.h"
#include "format.h"
#include "memdisk.h"
#include "metadata.h"
#include "stubs.h"

#define SS 512                   /* sector size of most tests */
#define DISK_SIZE (1024 * 1024)
#define NR_SPARES 16
#define DEADLINE_SECONDS 10

/* One device over one or two memdisks. */
struct fixture {
  bool internal;
  struct memdisk *disk;         /* the origin (the plugin) */
  struct memdisk *store;        /* the spare file, or the disk itself */
  struct remap_options opt;
  struct remap_device *dev;
};

static void
fixture_init (struct fixture *fx, bool internal, uint32_t spares)
{
  memset (fx, 0, sizeof *fx);
  fx->internal = internal;
  fx->disk = memdisk_new (DISK_SIZE, SS);
  ck_assert_ptr_nonnull (fx->disk);
  remap_options_init (&fx->opt);
  fx->opt.internal = internal;
  fx->opt.sector_size = SS;
  fx->opt.spare_bytes = (uint64_t) spares * SS;
  fx->opt.store_name = internal ? "the disk" : "spare.img";
  if (internal)
    fx->store = fx->disk;
  else {
    /* Exactly the region, as a fresh spare file grows to. */
    struct remap_geometry g;
    char why[256];
    ck_assert_int_eq (remap_geometry_compute (&g, false, DISK_SIZE, SS,
                                              spares, why, sizeof why), 0);
    fx->store = memdisk_new (g.region_size, SS);
    ck_assert_ptr_nonnull (fx->store);
  }
  stub_reset ();
}

static struct remap_device *
try_open (struct fixture *fx)
{
  return remap_device_open (&fx->opt, &fx->store->io, fx->store->size,
                            fx->disk->size);
}

static void
open_ok (struct fixture *fx)
{
  fx->dev = try_open (fx);
  ck_assert_msg (fx->dev != NULL, "open failed: %s", stub_last_error);
}

static void
start (struct fixture *fx)
{
  ck_assert_int_eq (remap_device_start (fx->dev), 0);
}

static void
close_dev (struct fixture *fx)
{
  if (fx->dev) {
    remap_device_stop (fx->dev);
    remap_device_free (fx->dev);
    fx->dev = NULL;
  }
}

static void
reopen (struct fixture *fx)
{
  close_dev (fx);
  stub_reset ();
  open_ok (fx);
}

static void
fixture_free (struct fixture *fx)
{
  close_dev (fx);
  if (fx->store != fx->disk)
    memdisk_free (fx->store);
  memdisk_free (fx->disk);
}

static const struct remap_io *
origin (struct fixture *fx)
{
  return &fx->disk->io;
}

/* ---- Data helpers. ---- */

static void
pattern (unsigned char *buf, size_t len, unsigned seed)
{
  for (size_t i = 0; i < len; i++)
    buf[i] = (unsigned char) (seed * 131 + i * 7 + (i >> 8) + 1);
}

static void
dev_write (struct fixture *fx, const void *buf, uint32_t count,
           uint64_t offset)
{
  int err = 0;

  ck_assert_msg (remap_device_pwrite (fx->dev, origin (fx), buf, count,
                                      offset, 0, &err) == 0,
                 "write of %" PRIu32 " at %" PRIu64 " failed: %s (%s)",
                 count, offset, strerror (err), stub_last_error);
}

/* The device's sector size (SS, except where a test uses defaults). */
static uint32_t
ss (const struct fixture *fx)
{
  return fx->dev->geo.sector_size;
}

static void
write_sector (struct fixture *fx, uint64_t sector, unsigned seed)
{
  unsigned char buf[REMAP_DEFAULT_SECTOR_SIZE];

  ck_assert_uint_le (ss (fx), sizeof buf);
  pattern (buf, ss (fx), seed);
  dev_write (fx, buf, ss (fx), sector * ss (fx));
}

static void
expect_read (struct fixture *fx, const void *want, uint32_t count,
             uint64_t offset)
{
  unsigned char *buf = malloc (count);
  int err = 0;

  ck_assert_ptr_nonnull (buf);
  ck_assert_msg (remap_device_pread (fx->dev, origin (fx), buf, count,
                                     offset, 0, &err) == 0,
                 "read of %" PRIu32 " at %" PRIu64 " failed: %s",
                 count, offset, strerror (err));
  ck_assert_msg (memcmp (buf, want, count) == 0,
                 "read of %" PRIu32 " at %" PRIu64 " returned wrong data",
                 count, offset);
  free (buf);
}

static void
expect_sector (struct fixture *fx, uint64_t sector, unsigned seed)
{
  unsigned char want[REMAP_DEFAULT_SECTOR_SIZE];

  ck_assert_uint_le (ss (fx), sizeof want);
  pattern (want, ss (fx), seed);
  expect_read (fx, want, ss (fx), sector * ss (fx));
}

/* The sector must be remapped; returns its spare. */
static uint32_t
expect_remapped (struct fixture *fx, uint64_t sector)
{
  struct remap_entry e;

  ck_assert_msg (remap_table_lookup (fx->dev->table, sector, &e),
                 "sector %" PRIu64 " has no entry", sector);
  ck_assert_uint_eq (e.state, REMAP_STATE_REMAPPED);
  ck_assert_uint_lt (e.spare, fx->dev->geo.spare_count);
  return e.spare;
}

static const unsigned char *
spare_data (struct fixture *fx, uint32_t spare)
{
  return fx->store->data + fx->dev->geo.spare_offset +
    (uint64_t) spare * ss (fx);
}

static const unsigned char *
origin_data (struct fixture *fx, uint64_t sector)
{
  return fx->disk->data + sector * ss (fx);
}

/* Decodes metadata copy i straight from the store's bytes. */
static enum remap_decode_status
decode_copy (struct fixture *fx, const struct remap_geometry *g, int i,
             struct remap_header *h)
{
  const unsigned char *hbuf = fx->store->data + g->header_offset[i];
  struct remap_entry *entries;
  enum remap_decode_status st;

  st = remap_header_decode (hbuf, h);
  if (st != REMAP_DECODE_OK)
    return st;
  entries = calloc (h->entry_count + 1, sizeof *entries);
  ck_assert_ptr_nonnull (entries);
  st = remap_entries_decode (h, hbuf, fx->store->data + g->table_offset[i],
                             entries);
  free (entries);
  return st;
}

/* What a fresh start would find in the store right now. */
static void
load_store (struct fixture *fx, struct remap_load_result *lr)
{
  remap_metadata_load (&fx->store->io, fx->store->size, fx->internal, 0, 0,
                       lr);
}

static bool
all_zero (const unsigned char *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return false;
  return true;
}

/* ---- Formatting. ---- */

START_TEST (test_format_internal)
{
  struct fixture fx;
  struct remap_header h;

  fixture_init (&fx, true, NR_SPARES);
  open_ok (&fx);
  ck_assert_uint_lt (fx.dev->geo.export_size, DISK_SIZE);
  ck_assert_uint_eq (fx.dev->geo.export_size, fx.dev->geo.region_offset);
  ck_assert_uint_eq (fx.dev->geo.region_offset + fx.dev->geo.region_size,
                     DISK_SIZE);
  ck_assert_uint_eq (fx.dev->geo.data_sectors,
                     fx.dev->geo.export_size / SS);
  ck_assert_uint_eq (fx.dev->geo.spare_count, NR_SPARES);
  ck_assert_uint_eq (remap_spares_total (fx.dev->spares), NR_SPARES);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 0);
  ck_assert_uint_eq (remap_table_count (fx.dev->table), 0);
  /* Both copies are on the disk, empty, same generation. */
  for (int i = 0; i < REMAP_COPIES; i++) {
    ck_assert_int_eq (decode_copy (&fx, &fx.dev->geo, i, &h),
                      REMAP_DECODE_OK);
    ck_assert_uint_eq (h.entry_count, 0);
    ck_assert_uint_eq (h.copy_index, i);
    ck_assert_uint_eq (h.generation, fx.dev->md.generation);
  }
  /* The export itself was not written. */
  ck_assert (all_zero (fx.disk->data, fx.dev->geo.export_size));
  fixture_free (&fx);
}
END_TEST

START_TEST (test_format_external)
{
  struct fixture fx;
  struct remap_header h;

  fixture_init (&fx, false, NR_SPARES);
  open_ok (&fx);
  ck_assert_uint_eq (fx.dev->geo.export_size, DISK_SIZE);
  ck_assert_uint_eq (fx.dev->geo.data_sectors, DISK_SIZE / SS);
  ck_assert_uint_eq (fx.dev->geo.region_size, fx.store->size);
  /* Nothing went to the plugin's disk. */
  ck_assert_uint_eq (fx.disk->pwrites, 0);
  ck_assert (all_zero (fx.disk->data, DISK_SIZE));
  for (int i = 0; i < REMAP_COPIES; i++)
    ck_assert_int_eq (decode_copy (&fx, &fx.dev->geo, i, &h),
                      REMAP_DECODE_OK);
  fixture_free (&fx);
}
END_TEST

/* ---- Remapping on a failed write. ---- */

static void
check_remap_one (struct fixture *fx, uint64_t sector)
{
  unsigned char want[SS];
  uint32_t spare;

  pattern (want, SS, 1);
  memdisk_fail_write (fx->disk, sector);
  write_sector (fx, sector, 1);
  spare = expect_remapped (fx, sector);
  ck_assert_uint_eq (remap_device_counter (fx->dev, REMAP_COUNTER_REMAPS), 1);
  ck_assert_uint_ge (remap_device_counter (fx->dev,
                                           REMAP_COUNTER_WRITE_ERRORS), 1);
  ck_assert_uint_eq (remap_spares_used (fx->dev->spares), 1);
  expect_sector (fx, sector, 1);
  ck_assert_msg (memcmp (origin_data (fx, sector), want, SS) != 0,
                 "the failing origin sector holds the data");
  ck_assert_int_eq (memcmp (spare_data (fx, spare), want, SS), 0);
  /* Neighbours are untouched. */
  ck_assert (all_zero (origin_data (fx, sector - 1), SS));
  ck_assert (all_zero (origin_data (fx, sector + 1), SS));
  ck_assert_uint_eq (remap_table_count (fx->dev->table), 1);
}

/* The entry is durable (on the store, both copies) when the write
 * returns.
 */
static void
check_durable (struct fixture *fx, uint64_t sector)
{
  struct remap_load_result lr;

  load_store (fx, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_VALID);
  ck_assert (!lr.needs_repair);
  ck_assert_uint_eq (lr.header.entry_count, 1);
  ck_assert_uint_eq (lr.entries[0].sector, sector);
  ck_assert_uint_eq (lr.entries[0].state, REMAP_STATE_REMAPPED);
  free (lr.entries);
  ck_assert (!remap_sync_is_dirty (fx->dev->sync));
}

START_TEST (test_remap_internal_inline)
{
  struct fixture fx;

  fixture_init (&fx, true, NR_SPARES);
  open_ok (&fx);
  check_remap_one (&fx, 10);
  check_durable (&fx, 10);
  fixture_free (&fx);
}
END_TEST

START_TEST (test_remap_external_thread)
{
  struct fixture fx;

  fixture_init (&fx, false, NR_SPARES);
  open_ok (&fx);
  start (&fx);
  check_remap_one (&fx, 10);
  check_durable (&fx, 10);
  /* Writing it again goes straight to the spare. */
  write_sector (&fx, 10, 2);
  expect_sector (&fx, 10, 2);
  ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_REMAPS), 1);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 1);
  fixture_free (&fx);
}
END_TEST

/* A partial write to a failing sector keeps the rest of the old
 * sector (read-modify-write from the still readable origin).
 */
START_TEST (test_partial_write_keeps_old_bytes)
{
  struct fixture fx;
  unsigned char old[SS], piece[100], want[SS];
  const uint64_t sector = 20;

  fixture_init (&fx, true, NR_SPARES);
  open_ok (&fx);
  write_sector (&fx, sector, 3);
  pattern (old, SS, 3);
  pattern (piece, sizeof piece, 4);
  memcpy (want, old, SS);
  memcpy (want + 50, piece, sizeof piece);

  memdisk_fail_write (fx.disk, sector);
  dev_write (&fx, piece, sizeof piece, sector * SS + 50);
  expect_remapped (&fx, sector);
  expect_read (&fx, want, SS, sector * SS);
  /* The origin still has the old sector. */
  ck_assert_int_eq (memcmp (origin_data (&fx, sector), old, SS), 0);
  /* And a piece spanning into the next (good) sector. */
  dev_write (&fx, piece, sizeof piece, sector * SS + SS - 30);
  memcpy (want + SS - 30, piece, 30);
  expect_read (&fx, want, SS, sector * SS);
  ck_assert_int_eq (memcmp (origin_data (&fx, sector + 1), piece + 30, 70),
                    0);
  ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_REMAPS), 1);
  fixture_free (&fx);
}
END_TEST

START_TEST (test_multi_sector_one_bad)
{
  struct fixture fx;
  unsigned char buf[8 * SS];
  struct remap_entry e;

  fixture_init (&fx, false, NR_SPARES);
  open_ok (&fx);
  start (&fx);
  pattern (buf, sizeof buf, 5);
  memdisk_fail_write (fx.disk, 33);
  dev_write (&fx, buf, sizeof buf, 30 * SS);
  expect_remapped (&fx, 33);
  ck_assert_uint_eq (remap_table_count (fx.dev->table), 1);
  ck_assert (!remap_table_next (fx.dev->table, 0, 32, &e));
  ck_assert (!remap_table_next (fx.dev->table, 34,
                                fx.dev->geo.data_sectors - 1, &e));
  ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_REMAPS), 1);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 1);
  /* The good sectors went to the origin. */
  ck_assert_int_eq (memcmp (origin_data (&fx, 30), buf, 3 * SS), 0);
  ck_assert_int_eq (memcmp (origin_data (&fx, 34), buf + 4 * SS, 4 * SS), 0);
  ck_assert_int_ne (memcmp (origin_data (&fx, 33), buf + 3 * SS, SS), 0);
  expect_read (&fx, buf, sizeof buf, 30 * SS);
  /* A read straddling the remapped sector. */
  expect_read (&fx, buf + 3 * SS - 10, SS + 20, 33 * SS - 10);
  fixture_free (&fx);
}
END_TEST

/* ---- Persistence and repair. ---- */

static void
check_persistence (bool internal, bool threaded)
{
  struct fixture fx;

  fixture_init (&fx, internal, NR_SPARES);
  open_ok (&fx);
  if (threaded)
    start (&fx);
  memdisk_fail_write (fx.disk, 7);
  memdisk_fail_write (fx.disk, 100);
  write_sector (&fx, 7, 7);
  write_sector (&fx, 100, 100);
  write_sector (&fx, 8, 8);
  reopen (&fx);
  if (threaded)
    start (&fx);
  expect_remapped (&fx, 7);
  expect_remapped (&fx, 100);
  ck_assert_uint_eq (remap_table_count (fx.dev->table), 2);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 2);
  expect_sector (&fx, 7, 7);
  expect_sector (&fx, 100, 100);
  expect_sector (&fx, 8, 8);
  if (!threaded)
    ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_REMAPS),
                       2);
  /* A new remap after the restart gets a spare not in use. */
  memdisk_fail_write (fx.disk, 9);
  write_sector (&fx, 9, 9);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 3);
  expect_sector (&fx, 7, 7);
  expect_sector (&fx, 9, 9);
  expect_sector (&fx, 100, 100);
  fixture_free (&fx);
}

START_TEST (test_persistence_internal_thread)
{
  check_persistence (true, true);
}
END_TEST

START_TEST (test_persistence_internal_inline)
{
  check_persistence (true, false);
}
END_TEST

START_TEST (test_persistence_external)
{
  check_persistence (false, true);
}
END_TEST

/* Damages copy i of a device holding one remap, reopens, and checks
 * the device came up from the other copy and repaired this one.
 */
static void
check_repair (struct fixture *fx, int i, uint64_t byte)
{
  struct remap_geometry geo;
  struct remap_header h;
  struct remap_header good;

  open_ok (fx);
  memdisk_fail_write (fx->disk, 5);
  write_sector (fx, 5, 5);
  geo = fx->dev->geo;
  close_dev (fx);

  fx->store->data[geo.header_offset[i] + byte] ^= 0x40;
  ck_assert_int_ne (decode_copy (fx, &geo, i, &h), REMAP_DECODE_OK);
  ck_assert_int_eq (decode_copy (fx, &geo, 1 - i, &good), REMAP_DECODE_OK);

  stub_reset ();
  open_ok (fx);
  ck_assert_msg (strstr (stub_last_error, "repair") != NULL,
                 "no repair message: %s", stub_last_error);
  expect_remapped (fx, 5);
  expect_sector (fx, 5, 5);
  ck_assert_int_eq (decode_copy (fx, &geo, i, &h), REMAP_DECODE_OK);
  ck_assert_uint_eq (h.entry_count, 1);
  ck_assert_uint_gt (h.generation, good.generation);
  ck_assert_int_eq (decode_copy (fx, &geo, 1 - i, &good), REMAP_DECODE_OK);
  ck_assert_uint_eq (h.generation, good.generation);
}

START_TEST (test_repair_copy_a)
{
  struct fixture fx;

  fixture_init (&fx, true, NR_SPARES);
  check_repair (&fx, 0, 0);
  fixture_free (&fx);
}
END_TEST

START_TEST (test_repair_copy_a_counters)
{
  struct fixture fx;

  fixture_init (&fx, false, NR_SPARES);
  check_repair (&fx, 0, 200);   /* inside the counters */
  fixture_free (&fx);
}
END_TEST

START_TEST (test_repair_copy_b)
{
  struct fixture fx;

  fixture_init (&fx, true, NR_SPARES);
  check_repair (&fx, 1, 24);    /* the sector size, in the geometry */
  fixture_free (&fx);
}
END_TEST

/* Header B damaged on a disk formatted with the default sector size
 * and spare count, opened again without parameters: copy A is found
 * where the defaults put it.
 */
START_TEST (test_repair_copy_b_defaults)
{
  struct fixture fx;

  fixture_init (&fx, true, NR_SPARES);
  fx.opt.sector_size = 0;
  fx.opt.spare_bytes = 0;
  fx.disk->bad_unit = REMAP_DEFAULT_SECTOR_SIZE;
  check_repair (&fx, 1, 0);
  ck_assert_uint_eq (fx.dev->geo.sector_size, REMAP_DEFAULT_SECTOR_SIZE);
  fixture_free (&fx);
}
END_TEST

/* Both copies damaged: refused, and nothing on the disk changes. */
static void
check_both_damaged (bool internal, uint64_t byte, const char *message)
{
  struct fixture fx;
  struct remap_geometry geo;
  unsigned char *before;

  fixture_init (&fx, internal, NR_SPARES);
  open_ok (&fx);
  memdisk_fail_write (fx.disk, 5);
  write_sector (&fx, 5, 5);
  geo = fx.dev->geo;
  close_dev (&fx);
  for (int i = 0; i < REMAP_COPIES; i++)
    fx.store->data[geo.header_offset[i] + byte] ^= 0x01;
  before = malloc (fx.store->size);
  ck_assert_ptr_nonnull (before);
  memcpy (before, fx.store->data, fx.store->size);

  stub_reset ();
  ck_assert_ptr_null (try_open (&fx));
  ck_assert_msg (strstr (stub_last_error, message) != NULL,
                 "the error does not say \"%s\": %s", message,
                 stub_last_error);
  ck_assert_int_eq (memcmp (before, fx.store->data, fx.store->size), 0);

  /* remap-format=yes discards it. */
  fx.opt.format = true;
  open_ok (&fx);
  ck_assert_uint_eq (remap_table_count (fx.dev->table), 0);
  free (before);
  fixture_free (&fx);
}

START_TEST (test_both_damaged_checksum)
{
  check_both_damaged (true, 200, "damaged");
}
END_TEST

START_TEST (test_both_damaged_geometry)
{
  check_both_damaged (false, 40, "damaged");
}
END_TEST

/* With the magic of both copies gone the metadata is not recognised
 * as ours at all; the region is still refused, as not blank.
 */
START_TEST (test_both_damaged_magic)
{
  check_both_damaged (true, 0, "remap-format=yes");
}
END_TEST

/* ---- Refusals. ---- */

START_TEST (test_nonblank_region_refused)
{
  struct fixture fx;
  unsigned char junk[SS], first[SS];

  fixture_init (&fx, true, NR_SPARES);
  pattern (junk, SS, 9);
  pattern (first, SS, 10);
  memcpy (fx.disk->data + DISK_SIZE - 3000, junk, SS);
  memcpy (fx.disk->data, first, SS);
  ck_assert_ptr_null (try_open (&fx));
  ck_assert_msg (strstr (stub_last_error, "remap-format=yes") != NULL,
                 "error: %s", stub_last_error);
  ck_assert_int_eq (memcmp (fx.disk->data + DISK_SIZE - 3000, junk, SS), 0);
  ck_assert_uint_eq (fx.disk->pwrites, 0);

  fx.opt.format = true;
  stub_reset ();
  open_ok (&fx);
  ck_assert_uint_lt (fx.dev->geo.export_size, DISK_SIZE);
  /* The export's data is kept. */
  expect_read (&fx, first, SS, 0);
  fixture_free (&fx);
}
END_TEST

START_TEST (test_nonblank_spare_file_refused)
{
  struct fixture fx;

  fixture_init (&fx, false, NR_SPARES);
  fx.store->data[1000] = 1;
  ck_assert_ptr_null (try_open (&fx));
  ck_assert_msg (strstr (stub_last_error, "remap-format=yes") != NULL,
                 "error: %s", stub_last_error);
  fx.opt.format = true;
  stub_reset ();
  open_ok (&fx);
  fixture_free (&fx);
}
END_TEST

START_TEST (test_external_other_disk_refused)
{
  struct fixture fx;
  char size_a[32], size_b[32];
  const uint64_t other = DISK_SIZE + 4096;

  fixture_init (&fx, false, NR_SPARES);
  open_ok (&fx);
  close_dev (&fx);
  stub_reset ();
  ck_assert_ptr_null (remap_device_open (&fx.opt, &fx.store->io,
                                         fx.store->size, other));
  snprintf (size_a, sizeof size_a, "%d", DISK_SIZE);
  snprintf (size_b, sizeof size_b, "%" PRIu64, other);
  ck_assert_msg (strstr (stub_last_error, size_a) != NULL &&
                 strstr (stub_last_error, size_b) != NULL,
                 "the error does not name %s and %s: %s", size_a, size_b,
                 stub_last_error);
  /* The right disk still opens. */
  stub_reset ();
  open_ok (&fx);
  fixture_free (&fx);
}
END_TEST

/* ---- Exhaustion and races. ---- */

START_TEST (test_spare_exhaustion)
{
  struct fixture fx;
  unsigned char buf[SS];
  int err = 0;

  fixture_init (&fx, true, 2);
  open_ok (&fx);
  start (&fx);
  for (uint64_t s = 1; s <= 3; s++)
    memdisk_fail_write (fx.disk, s);
  write_sector (&fx, 1, 1);
  write_sector (&fx, 2, 2);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 2);

  pattern (buf, SS, 3);
  ck_assert_int_eq (remap_device_pwrite (fx.dev, origin (&fx), buf, SS,
                                         3 * SS, 0, &err), -1);
  ck_assert_int_eq (err, ENOSPC);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 2);
  ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_REMAPS), 2);

  /* Everything remapped earlier still works. */
  expect_sector (&fx, 1, 1);
  expect_sector (&fx, 2, 2);
  write_sector (&fx, 2, 22);
  expect_sector (&fx, 2, 22);
  /* And so do good sectors. */
  write_sector (&fx, 4, 4);
  expect_sector (&fx, 4, 4);
  fixture_free (&fx);
}
END_TEST

struct racer {
  pthread_t thread;
  struct fixture *fx;
  pthread_barrier_t *barrier;
  unsigned seed;
  int r, err;
};

static void *
racer_thread (void *vp)
{
  struct racer *rc = vp;
  unsigned char buf[SS];

  pattern (buf, SS, rc->seed);
  pthread_barrier_wait (rc->barrier);
  rc->r = remap_device_pwrite (rc->fx->dev, origin (rc->fx), buf, SS,
                               50 * SS, 0, &rc->err);
  return NULL;
}

static void
join_by_deadline (pthread_t thread, const char *what)
{
  struct timespec ts;
  int r;

  clock_gettime (CLOCK_REALTIME, &ts);
  ts.tv_sec += DEADLINE_SECONDS;
  r = pthread_timedjoin_np (thread, NULL, &ts);
  ck_assert_msg (r == 0, "%s did not return within %d s", what,
                 DEADLINE_SECONDS);
}

#define NR_RACERS 4

START_TEST (test_racing_writers_one_spare)
{
  for (int round = 0; round < 5; round++) {
    struct fixture fx;
    struct racer rc[NR_RACERS];
    pthread_barrier_t barrier;
    unsigned char got[SS], want[SS];
    uint32_t spare;
    int err = 0;
    bool matched = false;

    fixture_init (&fx, round % 2 == 0, NR_SPARES);
    open_ok (&fx);
    if (round != 4)
      start (&fx);
    memdisk_fail_write (fx.disk, 50);
    /* Slow writes, so the racers overlap inside the remap. */
    fx.disk->write_delay_us = 2000;
    if (fx.store != fx.disk)
      fx.store->write_delay_us = 2000;
    pthread_barrier_init (&barrier, NULL, NR_RACERS);
    for (int i = 0; i < NR_RACERS; i++) {
      rc[i] = (struct racer) { .fx = &fx, .barrier = &barrier,
                               .seed = 60 + i };
      ck_assert_int_eq (pthread_create (&rc[i].thread, NULL, racer_thread,
                                        &rc[i]), 0);
    }
    for (int i = 0; i < NR_RACERS; i++)
      join_by_deadline (rc[i].thread, "a racing writer");
    pthread_barrier_destroy (&barrier);
    for (int i = 0; i < NR_RACERS; i++)
      ck_assert_msg (rc[i].r == 0, "racer %d failed: %s", i,
                     strerror (rc[i].err));

    ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 1);
    ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_REMAPS), 1);
    spare = expect_remapped (&fx, 50);
    ck_assert_int_eq (remap_device_pread (fx.dev, origin (&fx), got, SS,
                                          50 * SS, 0, &err), 0);
    for (int i = 0; i < NR_RACERS; i++) {
      pattern (want, SS, rc[i].seed);
      matched |= memcmp (got, want, SS) == 0;
    }
    ck_assert_msg (matched, "sector 50 holds none of the writes");
    ck_assert_int_eq (memcmp (spare_data (&fx, spare), got, SS), 0);
    fixture_free (&fx);
  }
}
END_TEST

/* ---- Zero, trim and metadata failures. ---- */

START_TEST (test_zero_on_remapped)
{
  struct fixture fx;
  unsigned char want[SS];
  uint32_t spare;
  uint64_t spare_at;
  unsigned zeroes;
  int err = 0;

  fixture_init (&fx, false, NR_SPARES);
  open_ok (&fx);
  memdisk_fail_write (fx.disk, 40);
  write_sector (&fx, 40, 40);
  spare = expect_remapped (&fx, 40);
  spare_at = fx.dev->geo.spare_offset + (uint64_t) spare * SS;

  /* Part of the sector. */
  zeroes = fx.store->zeroes;
  ck_assert_int_eq (remap_device_zero (fx.dev, origin (&fx), 100,
                                       40 * SS + 10, 0, &err), 0);
  pattern (want, SS, 40);
  memset (want + 10, 0, 100);
  expect_read (&fx, want, SS, 40 * SS);
  ck_assert_int_eq (memcmp (spare_data (&fx, spare), want, SS), 0);
  ck_assert_uint_eq (fx.store->zeroes, zeroes + 1);
  ck_assert_uint_eq (fx.store->last_zero_offset, spare_at + 10);
  ck_assert_uint_eq (fx.store->last_zero_count, 100);

  /* Sectors 39..41: the neighbours are zeroed on the origin. */
  write_sector (&fx, 39, 39);
  write_sector (&fx, 41, 41);
  ck_assert_int_eq (remap_device_zero (fx.dev, origin (&fx), 3 * SS,
                                       39 * SS, 0, &err), 0);
  ck_assert (all_zero (spare_data (&fx, spare), SS));
  ck_assert (all_zero (origin_data (&fx, 39), SS));
  ck_assert (all_zero (origin_data (&fx, 41), SS));
  memset (want, 0, SS);
  expect_read (&fx, want, SS, 40 * SS);
  ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_REMAPS), 1);

  /* Zeroing a sector whose origin fails moves it, with zeros. */
  write_sector (&fx, 45, 45);
  memdisk_fail_write (fx.disk, 45);
  ck_assert_int_eq (remap_device_zero (fx.dev, origin (&fx), 2 * SS,
                                       44 * SS, 0, &err), 0);
  spare = expect_remapped (&fx, 45);
  ck_assert (all_zero (spare_data (&fx, spare), SS));
  expect_read (&fx, want, SS, 45 * SS);
  expect_read (&fx, want, SS, 44 * SS);
  ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_REMAPS), 2);
  fixture_free (&fx);
}
END_TEST

START_TEST (test_trim_on_remapped)
{
  struct fixture fx;
  uint32_t spare;
  uint64_t spare_at;
  unsigned disk_trims, store_trims;
  int err = 0;

  fixture_init (&fx, false, NR_SPARES);
  open_ok (&fx);
  start (&fx);
  memdisk_fail_write (fx.disk, 40);
  write_sector (&fx, 40, 40);
  spare = expect_remapped (&fx, 40);
  spare_at = fx.dev->geo.spare_offset + (uint64_t) spare * SS;

  /* Only the remapped sector: only its spare is trimmed. */
  disk_trims = fx.disk->trims;
  store_trims = fx.store->trims;
  ck_assert_int_eq (remap_device_trim (fx.dev, origin (&fx), SS, 40 * SS, 0,
                                       &err), 0);
  ck_assert_uint_eq (fx.disk->trims, disk_trims);
  ck_assert_uint_eq (fx.store->trims, store_trims + 1);
  ck_assert_uint_eq (fx.store->last_trim_offset, spare_at);
  ck_assert_uint_eq (fx.store->last_trim_count, SS);

  /* 39..41: the neighbours on the origin, the middle on the spare. */
  ck_assert_int_eq (remap_device_trim (fx.dev, origin (&fx), 3 * SS, 39 * SS,
                                       0, &err), 0);
  ck_assert_uint_eq (fx.disk->trims, disk_trims + 2);
  ck_assert_uint_eq (fx.store->trims, store_trims + 2);
  ck_assert_uint_eq (fx.store->last_trim_offset, spare_at);
  ck_assert_uint_eq (fx.disk->last_trim_offset, 41 * SS);
  ck_assert_uint_eq (fx.disk->last_trim_count, SS);

  /* The sector stays remapped: a write still goes to the spare. */
  write_sector (&fx, 40, 44);
  expect_sector (&fx, 40, 44);
  ck_assert_uint_eq (expect_remapped (&fx, 40), spare);

  /* A range with no remapped sector goes to the origin in one call. */
  ck_assert_int_eq (remap_device_trim (fx.dev, origin (&fx), 8 * SS, 100 * SS,
                                       0, &err), 0);
  ck_assert_uint_eq (fx.disk->trims, disk_trims + 3);
  ck_assert_uint_eq (fx.disk->last_trim_offset, 100 * SS);
  ck_assert_uint_eq (fx.disk->last_trim_count, 8 * SS);
  fixture_free (&fx);
}
END_TEST

/* The spare is written but the table cannot be: the write must not be
 * acknowledged.  Once the store works again a sync makes it durable.
 */
START_TEST (test_metadata_failure_fails_write)
{
  struct fixture fx;
  unsigned char buf[SS];
  struct remap_load_result lr;
  int err = 0;

  fixture_init (&fx, false, NR_SPARES);
  open_ok (&fx);
  memdisk_fail_write (fx.disk, 12);
  memdisk_fail_after_writes (fx.store, 1);      /* the spare only */
  pattern (buf, SS, 12);
  ck_assert_int_eq (remap_device_pwrite (fx.dev, origin (&fx), buf, SS,
                                         12 * SS, 0, &err), -1);
  ck_assert_int_eq (err, EIO);
  ck_assert (remap_sync_is_dirty (fx.dev->sync));
  load_store (&fx, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_VALID);
  ck_assert_uint_eq (lr.header.entry_count, 0);
  free (lr.entries);

  memdisk_heal (fx.store);
  ck_assert_int_eq (remap_device_sync (fx.dev, &err), 0);
  check_durable (&fx, 12);
  fixture_free (&fx);
}
END_TEST

/* ---- Failing sectors under the metadata. ---- */

/* Enough spares for relocation slots (each holds a header and a
 * table) to fit at the top of the pool.
 */
#define RELOC_SPARES 200

static uint64_t
slot_offset (struct fixture *fx, uint32_t k)
{
  uint32_t first, n;

  ck_assert (remap_relocation_slot (&fx->dev->geo, k, &first, &n));
  return fx->dev->geo.spare_offset + (uint64_t) first * SS;
}

static uint32_t
slot_spares (struct fixture *fx, uint32_t k)
{
  uint32_t first, n;

  ck_assert (remap_relocation_slot (&fx->dev->geo, k, &first, &n));
  return n;
}

/* Copy A is on disk at slot k, current, and loads from there. */
static void
expect_copy_a_in_slot (struct fixture *fx, uint32_t k, uint32_t entries)
{
  struct remap_load_result lr;

  load_store (fx, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_VALID);
  ck_assert_msg (!lr.needs_repair, "a copy is stale after the move");
  ck_assert_uint_eq (lr.copy[0].location, k + 1);
  ck_assert_uint_eq (lr.copy[0].offset, slot_offset (fx, k));
  ck_assert_uint_eq (lr.copy[1].location, REMAP_LOCATION_HOME);
  ck_assert_uint_eq (lr.header.entry_count, entries);
  free (lr.entries);
}

/* A sector under copy A fails: the copy moves to a relocation slot,
 * both copies stay current, the move survives a restart, and a slot
 * that fails in turn is left for the next one.
 */
START_TEST (test_metadata_copy_moves)
{
  struct fixture fx;
  uint64_t old_home_a;

  fixture_init (&fx, true, RELOC_SPARES);
  open_ok (&fx);
  start (&fx);
  old_home_a = fx.dev->geo.table_offset[0];
  memdisk_fail_write (fx.store, old_home_a / SS);
  memdisk_fail_write (fx.disk, 10);
  write_sector (&fx, 10, 1);
  ck_assert_uint_lt (expect_remapped (&fx, 10), RELOC_SPARES / 2);
  ck_assert_uint_eq (fx.dev->md.location[0], 1);
  ck_assert (fx.dev->md.copy_valid[0] && fx.dev->md.copy_valid[1]);
  ck_assert (!fx.dev->redundancy_reduced);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares),
                     1 + slot_spares (&fx, 0));
  ck_assert_msg (strstr (stub_last_error, "moved it to spare sectors"),
                 "no log of the move: %s", stub_last_error);
  expect_copy_a_in_slot (&fx, 0, 1);

  reopen (&fx);
  start (&fx);
  ck_assert_uint_eq (fx.dev->md.location[0], 1);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares),
                     1 + slot_spares (&fx, 0));
  expect_sector (&fx, 10, 1);

  /* Slot 0 fails too: on to slot 1, and slot 0 is spares again. */
  memdisk_fail_write (fx.store, slot_offset (&fx, 0) / SS);
  memdisk_fail_write (fx.disk, 11);
  write_sector (&fx, 11, 2);
  ck_assert_uint_eq (fx.dev->md.location[0], 2);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares),
                     2 + slot_spares (&fx, 1));
  expect_copy_a_in_slot (&fx, 1, 2);

  reopen (&fx);
  ck_assert_uint_eq (fx.dev->md.location[0], 2);
  expect_sector (&fx, 10, 1);
  expect_sector (&fx, 11, 2);
  fixture_free (&fx);
}
END_TEST

/* The moved copy is damaged while the server is down: the table loads
 * from copy B, and the repair writes copy A at its home again (which
 * works now), so the slot's spares go back to the pool.
 */
START_TEST (test_damaged_moved_copy)
{
  struct fixture fx;
  uint64_t at;

  fixture_init (&fx, true, RELOC_SPARES);
  open_ok (&fx);
  memdisk_fail_write (fx.store, fx.dev->geo.header_offset[0] / SS);
  memdisk_fail_write (fx.disk, 10);
  write_sector (&fx, 10, 1);
  ck_assert_uint_eq (fx.dev->md.location[0], 1);
  at = slot_offset (&fx, 0);
  close_dev (&fx);
  memdisk_heal (fx.store);
  fx.store->data[at + 200] ^= 0x40;
  stub_reset ();
  open_ok (&fx);
  ck_assert_uint_eq (fx.dev->md.location[0], REMAP_LOCATION_HOME);
  ck_assert (fx.dev->md.copy_valid[0] && fx.dev->md.copy_valid[1]);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 1);
  expect_sector (&fx, 10, 1);
  fixture_free (&fx);
}
END_TEST

static int
take_any_run (void *opaque, uint32_t first, uint32_t count)
{
  (void) opaque; (void) first; (void) count;
  return 0;
}

static void
release_run_noted (void *opaque, uint32_t first, uint32_t count)
{
  (void) first; (void) count;
  ++*(int *) opaque;
}

/* A copy left behind in a slot that went back to the pool, and whose
 * spares the newest table now gives to a sector, is not a copy: the
 * load must not bring it back (the device would then refuse a table
 * that uses the slot's spares twice).
 */
START_TEST (test_abandoned_slot_ignored)
{
  struct memdisk *disk = memdisk_new (DISK_SIZE, SS);
  struct remap_metadata md;
  struct remap_load_result lr;
  struct remap_entry e;
  uint32_t first0, n0;
  uint64_t slot0, slot1, h, t;
  bool degraded;
  int err, released = 0;
  char why[256];

  memset (&md, 0, sizeof md);
  ck_assert_int_eq (remap_geometry_compute (&md.geo, true, DISK_SIZE, SS,
                                            RELOC_SPARES, why, sizeof why), 0);
  md.store = &disk->io;
  md.take_run = take_any_run;
  md.release_run = release_run_noted;
  md.run_opaque = &released;
  ck_assert_int_eq (remap_metadata_format (&md, &err), 0);
  remap_copy_offsets (&md.geo, 0, 1, &slot0, &t);
  remap_copy_offsets (&md.geo, 0, 2, &slot1, &t);
  ck_assert (remap_relocation_slot (&md.geo, 0, &first0, &n0));

  /* Generation 2: home A fails, A goes to slot 0. */
  memdisk_fail_write (disk, md.geo.header_offset[0] / SS);
  ck_assert_int_eq (remap_metadata_write (&md, NULL, 0, &degraded, &err), 0);
  ck_assert_uint_eq (md.location[0], 1);
  /* Generation 3: slot 0's table fails (its header keeps generation
   * 2, valid), A goes to slot 1 and slot 0 back to the pool.
   */
  memdisk_fail_write (disk, (slot0 + md.geo.header_bytes) / SS);
  ck_assert_int_eq (remap_metadata_write (&md, NULL, 0, &degraded, &err), 0);
  ck_assert_uint_eq (md.location[0], 2);
  ck_assert_int_eq (released, 1);
  /* Generation 4: a sector now lives on a spare of old slot 0. */
  memdisk_heal (disk);
  e = (struct remap_entry) { .sector = 7, .spare = first0,
                             .state = REMAP_STATE_REMAPPED };
  ck_assert_int_eq (remap_metadata_write (&md, &e, 1, &degraded, &err), 0);
  /* Copy A in slot 1 is damaged: the newest A left is slot 0's. */
  disk->data[slot1 + 200] ^= 1;

  remap_metadata_load (&disk->io, disk->size, true, SS, RELOC_SPARES, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_VALID);
  ck_assert_uint_eq (lr.header.generation, 4);
  ck_assert_uint_eq (lr.header.entry_count, 1);
  ck_assert_int_ne (lr.copy[0].status, REMAP_DECODE_OK);
  ck_assert_uint_eq (lr.copy[0].location, REMAP_LOCATION_HOME);
  ck_assert (lr.needs_repair);
  remap_copy_offsets (&md.geo, 1, REMAP_LOCATION_HOME, &h, &t);
  ck_assert_uint_eq (lr.copy[1].offset, h);
  free (lr.entries);
  memdisk_free (disk);
}
END_TEST

/* Header B cannot even be read after a restart: the table is found
 * through copy A, where the parameters put it, and the repair at open
 * moves copy B away from its failing header.
 */
START_TEST (test_unreadable_header_b)
{
  struct fixture fx;

  fixture_init (&fx, true, RELOC_SPARES);
  open_ok (&fx);
  memdisk_fail_write (fx.disk, 10);
  write_sector (&fx, 10, 1);
  memdisk_fail_read (fx.store, fx.dev->geo.header_offset[1] / SS);
  memdisk_fail_write (fx.store, fx.dev->geo.header_offset[1] / SS);
  reopen (&fx);
  expect_sector (&fx, 10, 1);
  ck_assert_uint_eq (fx.dev->md.location[1], 1);
  ck_assert (fx.dev->md.copy_valid[0] && fx.dev->md.copy_valid[1]);
  memdisk_fail_write (fx.disk, 11);
  write_sector (&fx, 11, 2);
  reopen (&fx);
  ck_assert_uint_eq (fx.dev->md.location[1], 1);
  expect_sector (&fx, 10, 1);
  expect_sector (&fx, 11, 2);
  fixture_free (&fx);
}
END_TEST

/* No copy can be written anywhere: the write that needs a remap fails
 * and so does a flush; what was stored before still reads.
 */
START_TEST (test_no_metadata_copy_writable)
{
  struct fixture fx;
  unsigned char buf[SS];
  int err = 0;

  fixture_init (&fx, true, RELOC_SPARES);
  open_ok (&fx);
  memdisk_fail_write (fx.disk, 10);
  write_sector (&fx, 10, 1);
  write_sector (&fx, 20, 20);
  for (int i = 0; i < REMAP_COPIES; i++)
    memdisk_fail_write (fx.store, fx.dev->geo.header_offset[i] / SS);
  for (uint32_t k = 0; k < REMAP_RELOCATION_SLOTS; k++) {
    uint32_t first, n;
    if (remap_relocation_slot (&fx.dev->geo, k, &first, &n))
      memdisk_fail_write (fx.store, slot_offset (&fx, k) / SS);
  }
  memdisk_fail_write (fx.disk, 11);
  pattern (buf, SS, 2);
  ck_assert_int_eq (remap_device_pwrite (fx.dev, origin (&fx), buf, SS,
                                         11 * SS, 0, &err), -1);
  ck_assert_int_eq (err, EIO);
  ck_assert_msg (strstr (stub_last_error, "writing the remap table failed"),
                 "the log does not say why: %s", stub_last_error);
  err = 0;
  ck_assert_int_eq (remap_device_sync (fx.dev, &err), -1);
  ck_assert_int_eq (err, EIO);
  expect_sector (&fx, 10, 1);
  expect_sector (&fx, 20, 20);
  fixture_free (&fx);
}
END_TEST

/* ---- Pending sectors, failing spares, the last partial sector. ---- */

/* An unreadable sector becomes pending (reads fail, nothing is
 * invented); its entry is not waited for, but stop writes it; a whole
 * write later either recovers it in place or moves it.
 */
static void
check_pending (bool threaded)
{
  struct fixture fx;
  unsigned char buf[SS];
  struct remap_entry e;
  int err = 0;

  fixture_init (&fx, true, NR_SPARES);
  open_ok (&fx);
  if (threaded)
    start (&fx);
  write_sector (&fx, 15, 15);
  memdisk_fail_read (fx.disk, 15);
  ck_assert_int_eq (remap_device_pread (fx.dev, origin (&fx), buf, SS,
                                        15 * SS, 0, &err), -1);
  ck_assert_int_eq (err, EIO);
  ck_assert (remap_table_lookup (fx.dev->table, 15, &e));
  ck_assert_uint_eq (e.state, REMAP_STATE_PENDING);
  ck_assert_uint_eq (remap_device_pending (fx.dev), 1);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 0);
  /* Its neighbours still read. */
  write_sector (&fx, 16, 16);
  expect_sector (&fx, 16, 16);

  /* Stop writes the pending entry even though nobody waited for it. */
  reopen (&fx);
  if (threaded)
    start (&fx);
  ck_assert (remap_table_lookup (fx.dev->table, 15, &e));
  ck_assert_uint_eq (e.state, REMAP_STATE_PENDING);
  ck_assert_uint_eq (remap_device_pending (fx.dev), 1);
  err = 0;
  ck_assert_int_eq (remap_device_pread (fx.dev, origin (&fx), buf, SS,
                                        15 * SS, 0, &err), -1);
  ck_assert_int_eq (err, EIO);

  /* A partial write cannot be completed honestly. */
  err = 0;
  ck_assert_int_eq (remap_device_pwrite (fx.dev, origin (&fx), buf, 10,
                                         15 * SS + 5, 0, &err), -1);
  ck_assert_int_eq (err, EIO);

  /* The medium recovers: a whole write clears the pending entry. */
  memdisk_heal (fx.disk);
  write_sector (&fx, 15, 115);
  ck_assert (!remap_table_lookup (fx.dev->table, 15, &e));
  ck_assert_uint_eq (remap_device_pending (fx.dev), 0);
  ck_assert_uint_eq (remap_device_counter (fx.dev, REMAP_COUNTER_RECOVERED),
                     1);
  expect_sector (&fx, 15, 115);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 0);

  /* Unreadable again, and now writes do not stick either: moved. */
  memdisk_fail_read (fx.disk, 15);
  ck_assert_int_eq (remap_device_pread (fx.dev, origin (&fx), buf, SS,
                                        15 * SS, 0, &err), -1);
  memdisk_fail_write (fx.disk, 15);
  write_sector (&fx, 15, 215);
  expect_remapped (&fx, 15);
  ck_assert_uint_eq (remap_device_pending (fx.dev), 0);
  expect_sector (&fx, 15, 215);
  fixture_free (&fx);
}

START_TEST (test_pending_inline)
{
  check_pending (false);
}
END_TEST

START_TEST (test_pending_thread)
{
  check_pending (true);
}
END_TEST

/* With remap-pending-partial=zero a partial write to an unreadable
 * pending sector moves it to a spare with zeros around the new bytes.
 */
START_TEST (test_pending_partial_zero)
{
  struct fixture fx;
  unsigned char buf[SS], piece[10];
  int err = 0;

  fixture_init (&fx, false, NR_SPARES);
  fx.opt.pending_partial_zero = true;
  open_ok (&fx);
  write_sector (&fx, 15, 15);
  memdisk_fail_read (fx.disk, 15);
  ck_assert_int_eq (remap_device_pread (fx.dev, origin (&fx), buf, SS,
                                        15 * SS, 0, &err), -1);
  pattern (piece, sizeof piece, 9);
  dev_write (&fx, piece, sizeof piece, 15 * SS + 5);
  memset (buf, 0, SS);
  memcpy (buf + 5, piece, sizeof piece);
  expect_read (&fx, buf, SS, 15 * SS);
  ck_assert_uint_eq (remap_device_pending (fx.dev), 0);
  fixture_free (&fx);
}
END_TEST

/* A spare that fails a write is retired and the sector moves to
 * another spare, for good: the retirement survives a restart.
 */
START_TEST (test_failing_spare_retired)
{
  struct fixture fx;
  uint32_t spare, first_spare;
  uint64_t unit;

  fixture_init (&fx, false, NR_SPARES);
  open_ok (&fx);
  start (&fx);
  memdisk_fail_write (fx.disk, 10);
  write_sector (&fx, 10, 10);
  first_spare = expect_remapped (&fx, 10);

  /* Its spare goes bad: the next write moves the sector. */
  unit = (fx.dev->geo.spare_offset + (uint64_t) first_spare * SS) / SS;
  memdisk_fail_write (fx.store, unit);
  write_sector (&fx, 10, 11);
  spare = expect_remapped (&fx, 10);
  ck_assert_uint_ne (spare, first_spare);
  ck_assert_uint_eq (remap_spares_retired (fx.dev->spares), 1);
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 1);
  expect_sector (&fx, 10, 11);

  /* A partial write to the moved sector keeps the rest. */
  {
    unsigned char piece[20], want[SS];
    pattern (want, SS, 11);
    pattern (piece, sizeof piece, 12);
    memcpy (want + 100, piece, sizeof piece);
    dev_write (&fx, piece, sizeof piece, 10 * SS + 100);
    expect_read (&fx, want, SS, 10 * SS);
    reopen (&fx);
    expect_read (&fx, want, SS, 10 * SS);
  }
  ck_assert_uint_eq (expect_remapped (&fx, 10), spare);
  ck_assert_uint_eq (remap_spares_retired (fx.dev->spares), 1);
  /* The retired spare is never handed out again. */
  memdisk_heal (fx.store);
  for (uint64_t s = 20; s < 20 + NR_SPARES - 2; s++) {
    memdisk_fail_write (fx.disk, s);
    write_sector (&fx, s, s);
    ck_assert_uint_ne (expect_remapped (&fx, s), first_spare);
  }
  fixture_free (&fx);
}
END_TEST

/* A spare that fails on its very first write: the remap uses the next. */
START_TEST (test_failing_spare_at_remap)
{
  struct fixture fx;

  fixture_init (&fx, false, NR_SPARES);
  open_ok (&fx);
  memdisk_fail_write (fx.store, fx.dev->geo.spare_offset / SS);  /* spare 0 */
  memdisk_fail_write (fx.disk, 10);
  write_sector (&fx, 10, 10);
  ck_assert_uint_eq (expect_remapped (&fx, 10), 1);
  ck_assert_uint_eq (remap_spares_retired (fx.dev->spares), 1);
  expect_sector (&fx, 10, 10);
  reopen (&fx);
  expect_sector (&fx, 10, 10);
  ck_assert_uint_eq (remap_spares_retired (fx.dev->spares), 1);
  fixture_free (&fx);
}
END_TEST

/* External mode with a disk whose last sector is partial. */
START_TEST (test_last_partial_sector)
{
  struct fixture fx;
  const uint64_t size = DISK_SIZE + 100;
  const uint64_t last = DISK_SIZE / SS;
  unsigned char piece[100], want[100];

  fixture_init (&fx, false, NR_SPARES);
  memdisk_free (fx.disk);
  fx.disk = memdisk_new (size, SS);
  ck_assert_ptr_nonnull (fx.disk);
  open_ok (&fx);
  ck_assert_uint_eq (fx.dev->geo.export_size, size);
  ck_assert_uint_eq (fx.dev->geo.data_sectors, last + 1);

  pattern (piece, sizeof piece, 1);
  dev_write (&fx, piece, sizeof piece, last * SS);
  memdisk_fail_write (fx.disk, last);
  /* A partial write to the short sector: the rest comes from the origin. */
  memcpy (want, piece, sizeof want);
  memset (want + 20, 0xee, 30);
  memset (piece, 0xee, 30);
  dev_write (&fx, piece, 30, last * SS + 20);
  expect_remapped (&fx, last);
  expect_read (&fx, want, sizeof want, last * SS);
  reopen (&fx);
  expect_read (&fx, want, sizeof want, last * SS);
  /* Whole-short-sector write. */
  pattern (piece, sizeof piece, 2);
  dev_write (&fx, piece, sizeof piece, last * SS);
  expect_read (&fx, piece, sizeof piece, last * SS);
  fixture_free (&fx);
}
END_TEST

/* Moving a sector back once its original place works again. */
START_TEST (test_unmap)
{
  struct fixture fx;
  struct remap_load_result lr;
  struct remap_entry e;
  int err = 0;

  fixture_init (&fx, true, NR_SPARES);
  open_ok (&fx);
  start (&fx);
  memdisk_fail_write (fx.disk, 10);
  write_sector (&fx, 10, 10);
  expect_remapped (&fx, 10);

  /* Still bad: refused, still remapped. */
  ck_assert_int_eq (remap_device_unmap (fx.dev, origin (&fx), 10, &err), -1);
  ck_assert_int_eq (err, EIO);
  expect_remapped (&fx, 10);

  memdisk_heal (fx.disk);
  ck_assert_int_eq (remap_device_unmap (fx.dev, origin (&fx), 10, &err), 0);
  ck_assert (!remap_table_lookup (fx.dev->table, 10, &e));
  ck_assert_uint_eq (remap_spares_used (fx.dev->spares), 0);
  expect_sector (&fx, 10, 10);
  {
    unsigned char want[SS];
    pattern (want, SS, 10);
    ck_assert_int_eq (memcmp (origin_data (&fx, 10), want, SS), 0);
  }
  load_store (&fx, &lr);
  ck_assert_int_eq (lr.found, REMAP_FOUND_VALID);
  ck_assert_uint_eq (lr.header.entry_count, 0);
  free (lr.entries);
  ck_assert_int_eq (remap_device_unmap (fx.dev, origin (&fx), 10, &err), -1);
  ck_assert_int_eq (err, ENOENT);
  fixture_free (&fx);
}
END_TEST

/* Pending entries are capped so that the table always fits its slot,
 * even with every spare in use or retired, and every remap then lost.
 */
START_TEST (test_pending_cap)
{
  struct fixture fx;
  uint64_t cap;
  int err = 0;

  fixture_init (&fx, false, 2);
  open_ok (&fx);
  /* Room left for every spare to be used and then lost. */
  cap = fx.dev->geo.entry_capacity - 2 * fx.dev->geo.spare_count;
  ck_assert_uint_lt (cap + 10, fx.dev->geo.data_sectors);
  ck_assert_int_eq (remap_device_mark_pending (fx.dev, 100, 100 + cap + 9,
                                               &err), 0);
  ck_assert_uint_eq (remap_device_pending (fx.dev), cap);
  /* Both spares used: the table is full and must still be written. */
  memdisk_fail_write (fx.disk, 1);
  memdisk_fail_write (fx.disk, 2);
  write_sector (&fx, 1, 1);
  write_sector (&fx, 2, 2);
  ck_assert_int_eq (remap_device_sync (fx.dev, &err), 0);
  reopen (&fx);
  ck_assert_uint_eq (remap_device_pending (fx.dev), cap);
  ck_assert_uint_eq (remap_table_count (fx.dev->table), cap + 2);
  expect_sector (&fx, 1, 1);
  expect_sector (&fx, 2, 2);
  /* Out of range. */
  ck_assert_int_eq (remap_device_mark_pending (fx.dev, 0,
                                               fx.dev->geo.data_sectors,
                                               &err), -1);
  fixture_free (&fx);
}
END_TEST

/* When the spare of a remapped sector cannot be read, its data is
 * gone: the origin still holds what the sector held *before* it was
 * remapped, and must never be served in its place.  Every read fails
 * with EIO until a whole-sector write replaces the sector.
 */
START_TEST (test_lost_spare_never_serves_stale_data)
{
  struct fixture fx;
  unsigned char buf[SS], stale[SS];
  uint32_t spare;
  int err, result[3], errs[3];
  bool was_stale[3];

  fixture_init (&fx, false, NR_SPARES);
  open_ok (&fx);
  write_sector (&fx, 10, 1);                    /* old data, on the origin */
  pattern (stale, SS, 1);
  memdisk_fail_write (fx.disk, 10);
  write_sector (&fx, 10, 2);                    /* new data, on a spare */
  spare = expect_remapped (&fx, 10);
  memdisk_fail_read (fx.store,
                     (fx.dev->geo.spare_offset + (uint64_t) spare * SS) / SS);

  /* Judged after freeing everything, so that the failure does not
   * show up as leaks under valgrind (CK_FORK=no).
   */
  for (int i = 0; i < 3; i++) {
    err = 0;
    memset (buf, 0, SS);
    result[i] = remap_device_pread (fx.dev, origin (&fx), buf, SS, 10 * SS,
                                    0, &err);
    errs[i] = err;
    was_stale[i] = result[i] == 0 && memcmp (buf, stale, SS) == 0;
  }
  fixture_free (&fx);
  for (int i = 0; i < 3; i++) {
    ck_assert_msg (!was_stale[i],
                   "read %d of sector 10 returned its stale pre-remap "
                   "contents from the origin after its spare lost the data",
                   i);
    ck_assert_int_eq (result[i], -1);
    ck_assert_int_eq (errs[i], EIO);
  }
}
END_TEST

/* ---- remap_device_walk. ---- */

struct span {
  uint64_t offset;
  uint32_t len;
  bool has_entry;
  uint64_t sector;
  uint32_t state;
};

struct walk {
  struct span span[32];
  int n;
  int stop_after;               /* return 1 after this many spans */
  bool fail;                    /* return -1 at the first span */
};

static int
walk_fn (void *vp, uint64_t offset, uint32_t len,
         const struct remap_entry *e, int *err)
{
  struct walk *w = vp;

  if (w->fail) {
    *err = EBADF;
    return -1;
  }
  ck_assert_int_lt (w->n, 32);
  w->span[w->n++] = (struct span) {
    .offset = offset, .len = len, .has_entry = e != NULL,
    .sector = e ? e->sector : 0, .state = e ? e->state : 0,
  };
  if (w->stop_after && w->n == w->stop_after)
    return 1;
  return 0;
}

static void
do_walk (struct fixture *fx, struct walk *w, uint64_t offset,
         uint32_t count, int expect_r)
{
  int err = 0;

  ck_assert_int_eq (remap_device_walk (fx->dev, count, offset, walk_fn, w,
                                       &err), expect_r);
  if (expect_r == 0 && count > 0) {
    /* The spans tile the request exactly. */
    uint64_t pos = offset;
    for (int i = 0; i < w->n; i++) {
      ck_assert_uint_eq (w->span[i].offset, pos);
      ck_assert_uint_gt (w->span[i].len, 0);
      pos += w->span[i].len;
    }
    ck_assert_uint_eq (pos, offset + count);
  }
}

static void
expect_span (const struct walk *w, int i, uint64_t offset, uint32_t len,
             int64_t sector)
{
  ck_assert_int_lt (i, w->n);
  ck_assert_uint_eq (w->span[i].offset, offset);
  ck_assert_uint_eq (w->span[i].len, len);
  if (sector < 0)
    ck_assert_msg (!w->span[i].has_entry, "span %d should be a plain run", i);
  else {
    ck_assert_msg (w->span[i].has_entry, "span %d should have an entry", i);
    ck_assert_uint_eq (w->span[i].sector, sector);
  }
}

START_TEST (test_walk)
{
  struct fixture fx;
  struct walk w;
  struct remap_entry reserved = { .sector = 9, .spare = NR_SPARES - 1,
                                  .state = REMAP_STATE_RESERVED };
  int err = 0;

  fixture_init (&fx, true, NR_SPARES);
  open_ok (&fx);
  memdisk_fail_write (fx.disk, 3);
  memdisk_fail_write (fx.disk, 5);
  write_sector (&fx, 3, 3);
  write_sector (&fx, 5, 5);
  ck_assert_int_eq (remap_device_mark_pending (fx.dev, 7, 7, &err), 0);
  /* A remap in progress: its sector still lives on the origin. */
  ck_assert_int_eq (remap_table_insert (fx.dev->table, &reserved), 0);

  /* From the middle of sector 2 to the end of sector 10. */
  memset (&w, 0, sizeof w);
  do_walk (&fx, &w, 2 * SS + 256, 8 * SS + 256, 0);
  ck_assert_int_eq (w.n, 7);
  expect_span (&w, 0, 2 * SS + 256, 256, -1);
  expect_span (&w, 1, 3 * SS, SS, 3);
  ck_assert_uint_eq (w.span[1].state, REMAP_STATE_REMAPPED);
  expect_span (&w, 2, 4 * SS, SS, -1);
  expect_span (&w, 3, 5 * SS, SS, 5);
  expect_span (&w, 4, 6 * SS, SS, -1);
  expect_span (&w, 5, 7 * SS, SS, 7);
  ck_assert_uint_eq (w.span[5].state, REMAP_STATE_PENDING);
  expect_span (&w, 6, 8 * SS, 3 * SS, -1);      /* 8, 9 (reserved), 10 */

  /* Inside one remapped sector. */
  memset (&w, 0, sizeof w);
  do_walk (&fx, &w, 3 * SS + 10, 10, 0);
  ck_assert_int_eq (w.n, 1);
  expect_span (&w, 0, 3 * SS + 10, 10, 3);

  /* Across the end of 5 into 6; and two adjacent remapped pieces. */
  memset (&w, 0, sizeof w);
  do_walk (&fx, &w, 5 * SS + 100, SS, 0);
  ck_assert_int_eq (w.n, 2);
  expect_span (&w, 0, 5 * SS + 100, SS - 100, 5);
  expect_span (&w, 1, 6 * SS, 100, -1);

  /* Far from any entry: one run. */
  memset (&w, 0, sizeof w);
  do_walk (&fx, &w, 20 * SS, 10 * SS, 0);
  ck_assert_int_eq (w.n, 1);
  expect_span (&w, 0, 20 * SS, 10 * SS, -1);

  /* Ends exactly where a remapped sector begins. */
  memset (&w, 0, sizeof w);
  do_walk (&fx, &w, 0, 3 * SS, 0);
  ck_assert_int_eq (w.n, 1);
  expect_span (&w, 0, 0, 3 * SS, -1);

  /* Nothing to walk. */
  memset (&w, 0, sizeof w);
  do_walk (&fx, &w, 3 * SS, 0, 0);
  ck_assert_int_eq (w.n, 0);

  /* Stopping early, and an error, are passed back at once. */
  memset (&w, 0, sizeof w);
  w.stop_after = 2;
  do_walk (&fx, &w, 0, 10 * SS, 1);
  ck_assert_int_eq (w.n, 2);
  memset (&w, 0, sizeof w);
  w.fail = true;
  err = 0;
  ck_assert_int_eq (remap_device_walk (fx.dev, 10 * SS, 0, walk_fn, &w,
                                       &err), -1);
  ck_assert_int_eq (err, EBADF);

  ck_assert (remap_table_remove (fx.dev->table, 9));
  fixture_free (&fx);
}
END_TEST

static Suite *
device_suite (void)
{
  Suite *s = suite_create ("device");
  TCase *open = tcase_create ("open");
  TCase *data = tcase_create ("datapath");

  tcase_set_timeout (open, 60);
  tcase_set_timeout (data, 60);
  tcase_add_test (open, test_format_internal);
  tcase_add_test (open, test_format_external);
  tcase_add_test (open, test_persistence_internal_thread);
  tcase_add_test (open, test_persistence_internal_inline);
  tcase_add_test (open, test_persistence_external);
  tcase_add_test (open, test_repair_copy_a);
  tcase_add_test (open, test_repair_copy_a_counters);
  tcase_add_test (open, test_repair_copy_b);
  tcase_add_test (open, test_repair_copy_b_defaults);
  tcase_add_test (open, test_both_damaged_checksum);
  tcase_add_test (open, test_both_damaged_geometry);
  tcase_add_test (open, test_both_damaged_magic);
  tcase_add_test (open, test_nonblank_region_refused);
  tcase_add_test (open, test_nonblank_spare_file_refused);
  tcase_add_test (open, test_external_other_disk_refused);
  suite_add_tcase (s, open);

  tcase_add_test (data, test_remap_internal_inline);
  tcase_add_test (data, test_remap_external_thread);
  tcase_add_test (data, test_partial_write_keeps_old_bytes);
  tcase_add_test (data, test_multi_sector_one_bad);
  tcase_add_test (data, test_spare_exhaustion);
  tcase_add_test (data, test_racing_writers_one_spare);
  tcase_add_test (data, test_zero_on_remapped);
  tcase_add_test (data, test_trim_on_remapped);
  tcase_add_test (data, test_metadata_failure_fails_write);
  tcase_add_test (data, test_metadata_copy_moves);
  tcase_add_test (data, test_unreadable_header_b);
  tcase_add_test (data, test_damaged_moved_copy);
  tcase_add_test (data, test_abandoned_slot_ignored);
  tcase_add_test (data, test_no_metadata_copy_writable);
  tcase_add_test (data, test_walk);
  tcase_add_test (data, test_pending_inline);
  tcase_add_test (data, test_pending_thread);
  tcase_add_test (data, test_pending_partial_zero);
  tcase_add_test (data, test_failing_spare_retired);
  tcase_add_test (data, test_failing_spare_at_remap);
  tcase_add_test (data, test_last_partial_sector);
  tcase_add_test (data, test_unmap);
  tcase_add_test (data, test_pending_cap);

  tcase_add_test (data, test_lost_spare_never_serves_stale_data);
  suite_add_tcase (s, data);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (device_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
