/* nbdkit-remap unit tests: the on-disk format and the region layout
 * (format.c).
 *
 * Covers remap_geometry_compute in internal and external mode (the
 * pieces of the region are contiguous and do not overlap, the
 * internal region ends at the last whole sector with header B at
 * remap_last_header_offset, export size and data_sectors, including a
 * partial last sector), its refusals, the header and entry round
 * trip, that flipping any byte of an encoded copy is caught by
 * decode + verify, and the status returned for each kind of bad
 * header or impossible entry.
 */
#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "crc32c.h"
#include "format.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)

/* Byte offsets of a few header fields (see format.c). */
#define OFF_VERSION 16
#define OFF_EXPORT_SIZE 40
#define OFF_SPARE_COUNT 72
#define OFF_GEOMETRY_CRC 136
#define OFF_COPY_INDEX 140
#define OFF_ENTRY_COUNT 152
#define OFF_COPY_CRC (REMAP_HEADER_BYTES - 4)

static void
put_le32 (unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = v >> (8 * i);
}

static void
put_le64 (unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = v >> (8 * i);
}

static void
compute_ok (struct remap_geometry *geo, bool internal, uint64_t disk_size,
            uint32_t sector_size, uint32_t spares)
{
  char why[256] = "";

  ck_assert_msg (remap_geometry_compute (geo, internal, disk_size,
                                         sector_size, spares,
                                         why, sizeof why) == 0,
                 "compute failed: %s", why);
}

/* The region pieces, in order, tile [region_offset, region_offset +
 * region_size) exactly, and each is sector aligned.
 */
static void
check_layout (const struct remap_geometry *g)
{
  struct { uint64_t offset, len; } piece[] = {
    { g->header_offset[0], g->header_bytes },
    { g->table_offset[0], g->table_bytes },
    { g->spare_offset, (uint64_t) g->spare_count * g->sector_size },
    { g->table_offset[1], g->table_bytes },
    { g->header_offset[1], g->header_bytes },
  };
  uint64_t pos = g->region_offset;

  for (size_t i = 0; i < sizeof piece / sizeof piece[0]; i++) {
    ck_assert_msg (piece[i].offset == pos, "piece %zu at %llu, expected %llu",
                   i, (unsigned long long) piece[i].offset,
                   (unsigned long long) pos);
    ck_assert_uint_gt (piece[i].len, 0);
    ck_assert_uint_eq (piece[i].offset % g->sector_size, 0);
    ck_assert_uint_eq (piece[i].len % g->sector_size, 0);
    pos += piece[i].len;
  }
  ck_assert_uint_eq (pos, g->region_offset + g->region_size);
  ck_assert_uint_ge (g->header_bytes, REMAP_HEADER_BYTES);
  ck_assert_uint_ge (g->header_bytes, g->sector_size);
  ck_assert_uint_ge (g->table_bytes,
                     (uint64_t) g->entry_capacity * REMAP_ENTRY_BYTES);
  ck_assert_uint_ge (g->entry_capacity, 2 * (uint64_t) g->spare_count);
}

START_TEST (test_geometry_internal)
{
  static const uint32_t sizes[] = { 512, 4096, 65536 };
  static const uint64_t extra[] = { 0, 1, 511, 4095 };

  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (size_t j = 0; j < sizeof extra / sizeof extra[0]; j++) {
      const uint32_t ss = sizes[i];
      const uint64_t disk = 64 * MiB + extra[j];
      const uint64_t whole_end = disk / ss * ss;
      struct remap_geometry g;

      compute_ok (&g, true, disk, ss, 100);
      check_layout (&g);
      ck_assert (g.internal);
      ck_assert_uint_eq (g.sector_size, ss);
      ck_assert_uint_eq (g.disk_size, disk);
      ck_assert_uint_eq (g.spare_count, 100);
      /* The region ends at the last whole sector ... */
      ck_assert_uint_eq (g.region_offset + g.region_size, whole_end);
      /* ... with header B where a later start looks for it ... */
      ck_assert_int_eq ((int64_t) g.header_offset[1],
                        remap_last_header_offset (disk, ss));
      /* ... and the export is everything before it. */
      ck_assert_uint_eq (g.export_size, g.region_offset);
      ck_assert_uint_lt (g.export_size, disk);
      ck_assert_uint_eq (g.export_size % ss, 0);
      ck_assert_uint_eq (g.data_sectors, g.export_size / ss);
      ck_assert_uint_eq (g.header_bytes, remap_header_slot (ss));
    }
}
END_TEST

START_TEST (test_geometry_external)
{
  const uint32_t ss = 4096;
  struct remap_geometry g;

  /* A disk whose last sector is partial. */
  compute_ok (&g, false, 10 * ss + 100, ss, 7);
  check_layout (&g);
  ck_assert (!g.internal);
  ck_assert_uint_eq (g.region_offset, 0);
  ck_assert_uint_eq (g.export_size, 10 * ss + 100);
  ck_assert_uint_eq (g.data_sectors, 11);
  /* Header B is in the last slot of a store of exactly region_size. */
  ck_assert_int_eq ((int64_t) g.header_offset[1],
                    remap_last_header_offset (g.region_size, ss));

  /* Whole sectors only. */
  compute_ok (&g, false, 10 * ss, ss, 7);
  ck_assert_uint_eq (g.export_size, 10 * ss);
  ck_assert_uint_eq (g.data_sectors, 10);

  /* A disk smaller than one sector still has one (partial) sector. */
  compute_ok (&g, false, 100, 512, 1);
  ck_assert_uint_eq (g.data_sectors, 1);
  ck_assert_uint_eq (g.export_size, 100);

  /* External mode does not depend on the disk being large. */
  compute_ok (&g, false, 1, 65536, 1000);
  check_layout (&g);
}
END_TEST

START_TEST (test_geometry_refusals)
{
  static const uint32_t bad_sizes[] = { 0, 256, 511, 1000, 4097, 131072,
                                        UINT32_MAX };
  struct remap_geometry g, ok;
  char why[256];
  uint64_t minimum;

  for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
    why[0] = '\0';
    ck_assert_int_eq (remap_geometry_compute (&g, false, 64 * MiB,
                                              bad_sizes[i], 10,
                                              why, sizeof why), -1);
    ck_assert_msg (strstr (why, "sector size") != NULL, "why: %s", why);
  }
  ck_assert_int_eq (remap_geometry_compute (&g, true, 64 * MiB, 4096, 0,
                                            why, sizeof why), -1);
  ck_assert_int_eq (remap_geometry_compute (&g, false, 0, 4096, 10,
                                            why, sizeof why), -1);

  /* Internal: the smallest disk that fits is the region plus one data
   * sector; a byte less is refused, with the sizes in the message.
   */
  compute_ok (&ok, true, 64 * MiB, 4096, 10);
  minimum = ok.region_size + 4096;
  compute_ok (&g, true, minimum, 4096, 10);
  ck_assert_uint_eq (g.export_size, 4096);
  ck_assert_uint_eq (g.data_sectors, 1);
  check_layout (&g);
  /* One byte short of a whole last sector loses that sector. */
  why[0] = '\0';
  ck_assert_int_eq (remap_geometry_compute (&g, true, minimum - 1, 4096, 10,
                                            why, sizeof why), -1);
  ck_assert_msg (strstr (why, "too small") != NULL, "why: %s", why);
  ck_assert_int_eq (remap_geometry_compute (&g, true, 4096, 4096, 10,
                                            why, sizeof why), -1);

  /* Header B's slot. */
  ck_assert_int_eq (remap_last_header_offset (4095, 512), -1);
  ck_assert_int_eq (remap_last_header_offset (4096, 512), 0);
  ck_assert_int_eq (remap_last_header_offset (8191, 512), 3584);
  ck_assert_int_eq (remap_last_header_offset (65536 + 100, 65536), 0);
  ck_assert_uint_eq (remap_header_slot (512), REMAP_HEADER_BYTES);
  ck_assert_uint_eq (remap_header_slot (65536), 65536);
}
END_TEST

/* ---- Encoding. ---- */

/* An encoded copy: the header slot and a table buffer as large as
 * the table slot could need (so a damaged entry count never reads
 * past it).
 */
struct copy {
  struct remap_header h;
  struct remap_entry *entries;
  size_t n;
  unsigned char hbuf[REMAP_HEADER_BYTES];
  unsigned char *table;
  size_t table_size;
};

static void
copy_init (struct copy *c, bool internal, uint32_t spares)
{
  memset (c, 0, sizeof *c);
  compute_ok (&c->h.geo, internal, 256 * MiB, 4096, spares);
  for (int i = 0; i < 16; i++)
    c->h.geo.uuid[i] = 0xa0 + i;
  c->h.copy_index = 1;
  c->h.generation = 0x0102030405060708ULL;
  for (int i = 0; i < REMAP_NR_COUNTERS; i++)
    c->h.counters[i] = (uint64_t) i * 0x1111111111ULL + 1;
  c->table_size = (size_t) c->h.geo.entry_capacity * REMAP_ENTRY_BYTES;
  c->table = calloc (1, c->table_size);
  c->entries = calloc (c->h.geo.entry_capacity, sizeof *c->entries);
  ck_assert_ptr_nonnull (c->table);
  ck_assert_ptr_nonnull (c->entries);
}

static void
copy_free (struct copy *c)
{
  free (c->table);
  free (c->entries);
}

static void
copy_add (struct copy *c, uint64_t sector, uint32_t spare, uint32_t state)
{
  ck_assert_uint_lt (c->n, c->h.geo.entry_capacity);
  c->entries[c->n++] = (struct remap_entry) {
    .sector = sector, .spare = spare, .state = state,
  };
}

/* A typical table: remapped and pending sectors, then retired spares. */
static void
copy_add_typical (struct copy *c)
{
  copy_add (c, 0, 3, REMAP_STATE_REMAPPED);
  copy_add (c, 7, REMAP_NO_SPARE, REMAP_STATE_PENDING);
  copy_add (c, 1000, 0, REMAP_STATE_REMAPPED);
  copy_add (c, 0x1234, 5, REMAP_STATE_REMAPPED);
  copy_add (c, c->h.geo.data_sectors - 1, REMAP_NO_SPARE,
            REMAP_STATE_PENDING);
  copy_add (c, REMAP_NO_SECTOR, 1, REMAP_STATE_RETIRED);
  copy_add (c, REMAP_NO_SECTOR, 2, REMAP_STATE_RETIRED);
  copy_add (c, REMAP_NO_SECTOR, c->h.geo.spare_count - 1,
            REMAP_STATE_RETIRED);
}

static void
copy_encode (struct copy *c)
{
  memset (c->table, 0, c->table_size);
  remap_entries_encode (c->entries, c->n, c->table);
  c->h.entry_count = c->n;
  remap_header_encode (&c->h, c->table, c->hbuf);
}

/* Decodes a (possibly damaged) copy: the first status that is not OK,
 * or OK.
 */
static enum remap_decode_status
decode (const unsigned char *hbuf, const unsigned char *table,
        struct remap_header *h, struct remap_entry *entries)
{
  enum remap_decode_status st = remap_header_decode (hbuf, h);

  if (st != REMAP_DECODE_OK)
    return st;
  return remap_entries_decode (h, hbuf, table, entries);
}

static enum remap_decode_status
copy_decode (struct copy *c)
{
  struct remap_header h;
  enum remap_decode_status st;
  struct remap_entry *out = calloc (c->h.geo.entry_capacity, sizeof *out);

  ck_assert_ptr_nonnull (out);
  st = decode (c->hbuf, c->table, &h, out);
  free (out);
  return st;
}

START_TEST (test_round_trip)
{
  for (int internal = 0; internal <= 1; internal++) {
    struct copy c;
    struct remap_header h;
    struct remap_entry *out;

    copy_init (&c, internal, 64);
    copy_add_typical (&c);
    copy_encode (&c);
    out = calloc (c.h.geo.entry_capacity, sizeof *out);
    ck_assert_ptr_nonnull (out);

    ck_assert_int_eq (remap_header_decode (c.hbuf, &h), REMAP_DECODE_OK);
    ck_assert (remap_geometry_equal (&h.geo, &c.h.geo));
    ck_assert_uint_eq (h.geo.data_sectors, c.h.geo.data_sectors);
    ck_assert_uint_eq (h.geo.internal, internal);
    ck_assert_mem_eq (h.geo.uuid, c.h.geo.uuid, 16);
    ck_assert_uint_eq (h.copy_index, c.h.copy_index);
    ck_assert_uint_eq (h.generation, c.h.generation);
    ck_assert_uint_eq (h.entry_count, c.n);
    for (int i = 0; i < REMAP_NR_COUNTERS; i++)
      ck_assert_uint_eq (h.counters[i], c.h.counters[i]);

    ck_assert_int_eq (remap_entries_decode (&h, c.hbuf, c.table, out),
                      REMAP_DECODE_OK);
    for (size_t i = 0; i < c.n; i++) {
      ck_assert_uint_eq (out[i].sector, c.entries[i].sector);
      ck_assert_uint_eq (out[i].spare, c.entries[i].spare);
      ck_assert_uint_eq (out[i].state, c.entries[i].state);
    }
    free (out);
    copy_free (&c);
  }
}
END_TEST

START_TEST (test_round_trip_empty_and_full)
{
  struct copy c;

  copy_init (&c, true, 3);
  copy_encode (&c);
  ck_assert_int_eq (copy_decode (&c), REMAP_DECODE_OK);

  /* A table filled to capacity. */
  for (uint32_t i = 0; i < c.h.geo.entry_capacity; i++)
    copy_add (&c, i * 2, i < c.h.geo.spare_count ? i : REMAP_NO_SPARE,
              i < c.h.geo.spare_count ? REMAP_STATE_REMAPPED
              : REMAP_STATE_PENDING);
  copy_encode (&c);
  ck_assert_int_eq (copy_decode (&c), REMAP_DECODE_OK);
  copy_free (&c);
}
END_TEST

/* Every byte of the header slot and of the used table, each flipped
 * with several patterns, must be caught by decode + verify.  That
 * includes the zero padding of the header, which the copy checksum
 * covers, and the checksum itself.
 */
START_TEST (test_flip_every_byte)
{
  static const unsigned char patterns[] = { 0x01, 0x80, 0xff };
  struct copy c;
  unsigned char *hbuf, *table;
  struct remap_header h;
  struct remap_entry *out;
  size_t used;

  copy_init (&c, true, 64);
  copy_add_typical (&c);
  copy_encode (&c);
  ck_assert_int_eq (copy_decode (&c), REMAP_DECODE_OK);
  used = c.n * REMAP_ENTRY_BYTES;
  hbuf = malloc (REMAP_HEADER_BYTES);
  table = malloc (c.table_size);
  out = calloc (c.h.geo.entry_capacity, sizeof *out);
  ck_assert_ptr_nonnull (hbuf);
  ck_assert_ptr_nonnull (table);
  ck_assert_ptr_nonnull (out);

  for (size_t p = 0; p < sizeof patterns; p++) {
    for (size_t i = 0; i < REMAP_HEADER_BYTES + used; i++) {
      enum remap_decode_status st;

      memcpy (hbuf, c.hbuf, REMAP_HEADER_BYTES);
      memcpy (table, c.table, c.table_size);
      if (i < REMAP_HEADER_BYTES)
        hbuf[i] ^= patterns[p];
      else
        table[i - REMAP_HEADER_BYTES] ^= patterns[p];
      st = decode (hbuf, table, &h, out);
      ck_assert_msg (st != REMAP_DECODE_OK,
                     "%s byte %zu flipped with 0x%02x was not detected",
                     i < REMAP_HEADER_BYTES ? "header" : "table",
                     i < REMAP_HEADER_BYTES ? i : i - REMAP_HEADER_BYTES,
                     patterns[p]);
      /* The magic and version have their own statuses. */
      if (i < REMAP_MAGIC_LEN)
        ck_assert_int_eq (st, REMAP_DECODE_NO_MAGIC);
      else if (i >= OFF_VERSION && i < OFF_VERSION + 4)
        ck_assert_int_eq (st, REMAP_DECODE_BAD_VERSION);
      else if (i < OFF_GEOMETRY_CRC + 4)
        ck_assert_int_eq (st, REMAP_DECODE_BAD_GEOMETRY);
    }
  }
  free (hbuf);
  free (table);
  free (out);
  copy_free (&c);
}
END_TEST

/* Table bytes beyond entry_count are not part of the copy. */
START_TEST (test_unused_table_ignored)
{
  struct copy c;

  copy_init (&c, false, 16);
  copy_add_typical (&c);
  copy_encode (&c);
  memset (c.table + c.n * REMAP_ENTRY_BYTES, 0x5a,
          c.table_size - c.n * REMAP_ENTRY_BYTES);
  ck_assert_int_eq (copy_decode (&c), REMAP_DECODE_OK);
  copy_free (&c);
}
END_TEST

START_TEST (test_bad_magic_and_version)
{
  struct copy c;
  struct remap_header h;

  copy_init (&c, true, 16);
  copy_encode (&c);

  /* All zeros (never formatted). */
  memset (c.hbuf, 0, sizeof c.hbuf);
  ck_assert_int_eq (remap_header_decode (c.hbuf, &h), REMAP_DECODE_NO_MAGIC);

  /* A newer version, with every checksum made right again. */
  copy_encode (&c);
  put_le32 (c.hbuf + OFF_VERSION, REMAP_FORMAT_VERSION + 1);
  put_le32 (c.hbuf + OFF_GEOMETRY_CRC,
            crc32c_update (0, c.hbuf, OFF_GEOMETRY_CRC));
  ck_assert_int_eq (remap_header_decode (c.hbuf, &h),
                    REMAP_DECODE_BAD_VERSION);
  put_le32 (c.hbuf + OFF_VERSION, 0);
  ck_assert_int_eq (remap_header_decode (c.hbuf, &h),
                    REMAP_DECODE_BAD_VERSION);
  copy_free (&c);
}
END_TEST

/* A geometry with a valid checksum that we would never have computed
 * is not trusted.
 */
START_TEST (test_inconsistent_geometry)
{
  struct copy c;
  struct remap_header h;

  copy_init (&c, true, 16);
  copy_encode (&c);
  put_le64 (c.hbuf + OFF_EXPORT_SIZE, c.h.geo.export_size + 4096);
  put_le32 (c.hbuf + OFF_GEOMETRY_CRC,
            crc32c_update (0, c.hbuf, OFF_GEOMETRY_CRC));
  ck_assert_int_eq (remap_header_decode (c.hbuf, &h),
                    REMAP_DECODE_BAD_GEOMETRY);

  copy_encode (&c);
  put_le32 (c.hbuf + OFF_SPARE_COUNT, 0);
  put_le32 (c.hbuf + OFF_GEOMETRY_CRC,
            crc32c_update (0, c.hbuf, OFF_GEOMETRY_CRC));
  ck_assert_int_eq (remap_header_decode (c.hbuf, &h),
                    REMAP_DECODE_BAD_GEOMETRY);
  copy_free (&c);
}
END_TEST

/* Entries are checked after the checksum: these are encoded with a
 * correct checksum and must still be refused.
 */
static void
expect_entries (struct copy *c, enum remap_decode_status want)
{
  struct remap_header h;
  struct remap_entry *out = calloc (c->h.geo.entry_capacity, sizeof *out);

  ck_assert_ptr_nonnull (out);
  copy_encode (c);
  ck_assert_int_eq (remap_header_decode (c->hbuf, &h), REMAP_DECODE_OK);
  ck_assert_int_eq (remap_entries_decode (&h, c->hbuf, c->table, out), want);
  free (out);
  c->n = 0;
}

START_TEST (test_bad_entries)
{
  struct copy c;
  uint64_t last;
  uint32_t spares;

  copy_init (&c, true, 16);
  last = c.h.geo.data_sectors - 1;
  spares = c.h.geo.spare_count;

  /* Sanity: the cases below differ from a good table in one way. */
  copy_add (&c, 5, 0, REMAP_STATE_REMAPPED);
  copy_add (&c, last, spares - 1, REMAP_STATE_REMAPPED);
  copy_add (&c, REMAP_NO_SECTOR, 1, REMAP_STATE_RETIRED);
  expect_entries (&c, REMAP_DECODE_OK);

  /* Out of order. */
  copy_add (&c, 5, 0, REMAP_STATE_REMAPPED);
  copy_add (&c, 3, 1, REMAP_STATE_REMAPPED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);

  /* Duplicate sector. */
  copy_add (&c, 5, 0, REMAP_STATE_REMAPPED);
  copy_add (&c, 5, 1, REMAP_STATE_REMAPPED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);
  copy_add (&c, 5, 0, REMAP_STATE_REMAPPED);
  copy_add (&c, 5, REMAP_NO_SPARE, REMAP_STATE_PENDING);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);

  /* Sector beyond the export. */
  copy_add (&c, last + 1, 0, REMAP_STATE_REMAPPED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);
  copy_add (&c, last + 1, REMAP_NO_SPARE, REMAP_STATE_PENDING);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);

  /* Remapped to a spare that does not exist. */
  copy_add (&c, 5, spares, REMAP_STATE_REMAPPED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);
  copy_add (&c, 5, REMAP_NO_SPARE, REMAP_STATE_REMAPPED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);

  /* Pending with a spare. */
  copy_add (&c, 5, 0, REMAP_STATE_PENDING);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);

  /* States never written to disk. */
  copy_add (&c, 5, 0, REMAP_STATE_RESERVED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);
  copy_add (&c, 5, 0, 0);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);
  copy_add (&c, 5, 0, REMAP_STATE_REMAPPED | REMAP_STATE_PENDING);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);

  /* Retired spares: after the sectors, ascending, existing, no sector. */
  copy_add (&c, REMAP_NO_SECTOR, 1, REMAP_STATE_RETIRED);
  copy_add (&c, 5, 0, REMAP_STATE_REMAPPED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);
  copy_add (&c, REMAP_NO_SECTOR, 2, REMAP_STATE_RETIRED);
  copy_add (&c, REMAP_NO_SECTOR, 1, REMAP_STATE_RETIRED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);
  copy_add (&c, REMAP_NO_SECTOR, 1, REMAP_STATE_RETIRED);
  copy_add (&c, REMAP_NO_SECTOR, 1, REMAP_STATE_RETIRED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);
  copy_add (&c, REMAP_NO_SECTOR, spares, REMAP_STATE_RETIRED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);
  copy_add (&c, 5, 1, REMAP_STATE_RETIRED);
  expect_entries (&c, REMAP_DECODE_BAD_ENTRIES);

  copy_free (&c);
}
END_TEST

START_TEST (test_bad_counts)
{
  struct copy c;
  struct remap_header h;

  copy_init (&c, true, 16);
  copy_add_typical (&c);
  copy_encode (&c);

  /* More entries than the slot holds: refused by the header itself,
   * before anything would read that much table.
   */
  put_le32 (c.hbuf + OFF_ENTRY_COUNT, c.h.geo.entry_capacity + 1);
  ck_assert_int_ne (remap_header_decode (c.hbuf, &h), REMAP_DECODE_OK);

  copy_encode (&c);
  put_le32 (c.hbuf + OFF_COPY_INDEX, REMAP_COPIES);
  ck_assert_int_ne (remap_header_decode (c.hbuf, &h), REMAP_DECODE_OK);
  copy_free (&c);
}
END_TEST

/* The copy checksum binds the header to its table: the header of one
 * copy does not verify another table with the same entry count.
 */
START_TEST (test_checksum_binds_table)
{
  struct copy a, b;
  struct remap_header h;
  struct remap_entry *out;

  copy_init (&a, true, 16);
  copy_init (&b, true, 16);
  copy_add (&a, 10, 0, REMAP_STATE_REMAPPED);
  copy_add (&b, 11, 0, REMAP_STATE_REMAPPED);
  copy_encode (&a);
  copy_encode (&b);
  out = calloc (a.h.geo.entry_capacity, sizeof *out);
  ck_assert_ptr_nonnull (out);
  ck_assert_int_eq (remap_header_decode (a.hbuf, &h), REMAP_DECODE_OK);
  ck_assert_int_eq (remap_entries_decode (&h, a.hbuf, b.table, out),
                    REMAP_DECODE_BAD_CHECKSUM);
  ck_assert_int_eq (remap_entries_decode (&h, a.hbuf, a.table, out),
                    REMAP_DECODE_OK);
  free (out);
  copy_free (&a);
  copy_free (&b);
}
END_TEST

START_TEST (test_strerror)
{
  for (int s = REMAP_DECODE_OK; s <= REMAP_DECODE_BAD_ENTRIES; s++) {
    const char *msg = remap_decode_strerror (s);
    ck_assert_ptr_nonnull (msg);
    ck_assert_uint_gt (strlen (msg), 0);
    for (int t = REMAP_DECODE_OK; t < s; t++)
      ck_assert_str_ne (msg, remap_decode_strerror (t));
  }
}
END_TEST

static Suite *
format_suite (void)
{
  Suite *s = suite_create ("format");
  TCase *geo = tcase_create ("geometry");
  TCase *enc = tcase_create ("encoding");

  tcase_add_test (geo, test_geometry_internal);
  tcase_add_test (geo, test_geometry_external);
  tcase_add_test (geo, test_geometry_refusals);
  suite_add_tcase (s, geo);

  tcase_add_test (enc, test_round_trip);
  tcase_add_test (enc, test_round_trip_empty_and_full);
  tcase_add_test (enc, test_flip_every_byte);
  tcase_add_test (enc, test_unused_table_ignored);
  tcase_add_test (enc, test_bad_magic_and_version);
  tcase_add_test (enc, test_inconsistent_geometry);
  tcase_add_test (enc, test_bad_entries);
  tcase_add_test (enc, test_bad_counts);
  tcase_add_test (enc, test_checksum_binds_table);
  tcase_add_test (enc, test_strerror);
  suite_add_tcase (s, enc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (format_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
