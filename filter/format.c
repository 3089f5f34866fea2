/* nbdkit-remap: encoding, decoding and validation of the on-disk
 * metadata, and the arithmetic of the region layout.
 *
 * Header slot (REMAP_HEADER_BYTES used, rest of the slot zero):
 *
 *   0   magic[16]        "nbdkit-remap\r\n\032\n"
 *   16  u32 version      REMAP_FORMAT_VERSION
 *   20  u32 header slot  bytes
 *   24  u32 sector size
 *   28  u32 flags        bit 0: internal region
 *   32  u64 disk size    the plugin's size at format time
 *   40  u64 export size
 *   48  u64 region offset, 56 u64 region size
 *   64  u64 spare offset, 72 u32 spare count, 76 u32 entry capacity
 *   80  u64 table slot bytes
 *   88  u64 header offset[2], 104 u64 table offset[2]
 *   120 uuid[16]
 *   136 u32 geometry CRC-32C over bytes 0..135
 *   140 u32 copy index, 144 u64 generation, 152 u32 entry count
 *   156 u32 location     0: the copy's home; k+1: relocation slot k
 *   160 u64 counters[32]
 *   4092 u32 CRC-32C over bytes 0..4091 followed by the entries
 *
 * Entry (16 bytes): u64 sector, u32 spare, u32 state.  A pending
 * entry's spare is all ones, or all ones but the lowest bit when the
 * sector's data was lost with a failed spare.  Entries for
 * sectors (REMAPPED 1, PENDING 2) come first in ascending sector
 * order; then the retired spares (RETIRED 4, sector all ones) in
 * ascending spare order.
 *
 * The geometry has its own checksum because it never changes after
 * format: a torn table write must not stop us finding the other copy.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crc32c.h"
#include "format.h"

#define GEOMETRY_BYTES 136
#define CRC_OFFSET (REMAP_HEADER_BYTES - 4)
#define FLAG_INTERNAL 1

static void
put_u32 (unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = v >> (8 * i);
}

static void
put_u64 (unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = v >> (8 * i);
}

static uint32_t
get_u32 (const unsigned char *p)
{
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t
get_u64 (const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

const char *
remap_decode_strerror (enum remap_decode_status s)
{
  switch (s) {
  case REMAP_DECODE_OK: return "valid";
  case REMAP_DECODE_NO_MAGIC: return "no remap metadata (magic not found)";
  case REMAP_DECODE_BAD_VERSION: return "unknown metadata format version";
  case REMAP_DECODE_BAD_GEOMETRY: return "corrupt geometry";
  case REMAP_DECODE_BAD_CHECKSUM: return "checksum mismatch";
  case REMAP_DECODE_BAD_ENTRIES: return "impossible table entries";
  case REMAP_DECODE_UNREADABLE: return "unreadable (I/O error)";
  case REMAP_DECODE_PAST_END:
    return "lies past the end of the file or disk (truncated, or forged)";
  }
  return "unknown status";
}

uint64_t
remap_header_slot (uint32_t sector_size)
{
  return sector_size > REMAP_HEADER_BYTES ? sector_size : REMAP_HEADER_BYTES;
}

int64_t
remap_last_header_offset (uint64_t disk_size, uint32_t sector_size)
{
  uint64_t aligned_end = disk_size / sector_size * sector_size;
  uint64_t slot = remap_header_slot (sector_size);

  if (aligned_end < slot || aligned_end > INT64_MAX)
    return -1;
  return aligned_end - slot;
}

int
remap_geometry_compute (struct remap_geometry *geo, bool internal,
                        uint64_t disk_size, uint32_t sector_size,
                        uint32_t spare_count, char *why, size_t why_len)
{
  const uint64_t slot = remap_header_slot (sector_size);
  uint64_t capacity, table_bytes, spare_bytes, region_size;

  memset (geo, 0, sizeof *geo);
  if (sector_size < REMAP_MIN_SECTOR_SIZE ||
      sector_size > REMAP_MAX_SECTOR_SIZE ||
      (sector_size & (sector_size - 1)) != 0) {
    snprintf (why, why_len, "sector size %" PRIu32 " is not a power of two "
              "from %d to %d", sector_size,
              REMAP_MIN_SECTOR_SIZE, REMAP_MAX_SECTOR_SIZE);
    return -1;
  }
  if (spare_count < REMAP_MIN_SPARES || spare_count > REMAP_MAX_SPARES) {
    snprintf (why, why_len, "spare count %" PRIu32 " is out of range "
              "(%d to %" PRIu32 ")", spare_count, REMAP_MIN_SPARES,
              (uint32_t) REMAP_MAX_SPARES);
    return -1;
  }

  capacity = (uint64_t) spare_count * 2 + REMAP_EXTRA_ENTRIES;
  table_bytes = remap_round_up (capacity * REMAP_ENTRY_BYTES, sector_size);
  spare_bytes = (uint64_t) spare_count * sector_size;
  region_size = 2 * (slot + table_bytes) + spare_bytes;

  geo->sector_size = sector_size;
  geo->internal = internal;
  geo->disk_size = disk_size;
  geo->header_bytes = slot;
  geo->table_bytes = table_bytes;
  geo->spare_count = spare_count;
  geo->entry_capacity = capacity;
  geo->region_size = region_size;

  if (internal) {
    uint64_t aligned_end = disk_size / sector_size * sector_size;
    if (aligned_end < region_size + sector_size) {
      snprintf (why, why_len, "the disk (%" PRIu64 " bytes) is too small for "
                "a remap region of %" PRIu64 " bytes (%" PRIu32 " spare "
                "sectors of %" PRIu32 " bytes plus two metadata copies) and "
                "at least one data sector",
                disk_size, region_size, spare_count, sector_size);
      return -1;
    }
    geo->region_offset = aligned_end - region_size;
    geo->export_size = geo->region_offset;
  }
  else {
    if (disk_size == 0) {
      snprintf (why, why_len, "the plugin's disk is empty");
      return -1;
    }
    geo->region_offset = 0;
    geo->export_size = disk_size;
  }
  geo->data_sectors = (geo->export_size + sector_size - 1) / sector_size;
  geo->header_offset[0] = geo->region_offset;
  geo->table_offset[0] = geo->region_offset + slot;
  geo->spare_offset = geo->table_offset[0] + table_bytes;
  geo->table_offset[1] = geo->spare_offset + spare_bytes;
  geo->header_offset[1] = geo->table_offset[1] + table_bytes;
  return 0;
}

bool
remap_relocation_slot (const struct remap_geometry *geo, uint32_t k,
                       uint32_t *first_spare, uint32_t *nr_spares)
{
  uint64_t run = (geo->header_bytes + geo->table_bytes) / geo->sector_size;

  if (k >= REMAP_RELOCATION_SLOTS || (k + 1) * run > geo->spare_count)
    return false;
  *first_spare = geo->spare_count - (k + 1) * run;
  *nr_spares = run;
  return true;
}

void
remap_copy_offsets (const struct remap_geometry *geo, int i,
                    uint32_t location, uint64_t *header_offset,
                    uint64_t *table_offset)
{
  uint32_t first, n;

  if (location == REMAP_LOCATION_HOME ||
      !remap_relocation_slot (geo, location - 1, &first, &n)) {
    *header_offset = geo->header_offset[i];
    *table_offset = geo->table_offset[i];
    return;
  }
  *header_offset = geo->spare_offset + (uint64_t) first * geo->sector_size;
  *table_offset = *header_offset + geo->header_bytes;
}

bool
remap_geometry_equal (const struct remap_geometry *a,
                      const struct remap_geometry *b)
{
  return a->sector_size == b->sector_size &&
    a->internal == b->internal &&
    a->disk_size == b->disk_size &&
    a->export_size == b->export_size &&
    a->data_sectors == b->data_sectors &&
    a->region_offset == b->region_offset &&
    a->region_size == b->region_size &&
    a->header_bytes == b->header_bytes &&
    a->table_bytes == b->table_bytes &&
    a->spare_offset == b->spare_offset &&
    a->spare_count == b->spare_count &&
    a->entry_capacity == b->entry_capacity &&
    memcmp (a->header_offset, b->header_offset,
            sizeof a->header_offset) == 0 &&
    memcmp (a->table_offset, b->table_offset, sizeof a->table_offset) == 0 &&
    memcmp (a->uuid, b->uuid, sizeof a->uuid) == 0;
}

static void
geometry_encode (const struct remap_geometry *g, unsigned char *buf)
{
  memcpy (buf, REMAP_MAGIC, REMAP_MAGIC_LEN);
  put_u32 (buf + 16, REMAP_FORMAT_VERSION);
  put_u32 (buf + 20, g->header_bytes);
  put_u32 (buf + 24, g->sector_size);
  put_u32 (buf + 28, g->internal ? FLAG_INTERNAL : 0);
  put_u64 (buf + 32, g->disk_size);
  put_u64 (buf + 40, g->export_size);
  put_u64 (buf + 48, g->region_offset);
  put_u64 (buf + 56, g->region_size);
  put_u64 (buf + 64, g->spare_offset);
  put_u32 (buf + 72, g->spare_count);
  put_u32 (buf + 76, g->entry_capacity);
  put_u64 (buf + 80, g->table_bytes);
  for (int i = 0; i < REMAP_COPIES; i++) {
    put_u64 (buf + 88 + 8*i, g->header_offset[i]);
    put_u64 (buf + 104 + 8*i, g->table_offset[i]);
  }
  memcpy (buf + 120, g->uuid, sizeof g->uuid);
  put_u32 (buf + GEOMETRY_BYTES, crc32c_update (0, buf, GEOMETRY_BYTES));
}

void
remap_entries_encode (const struct remap_entry *entries, size_t n,
                      unsigned char *table)
{
  for (size_t i = 0; i < n; i++) {
    unsigned char *p = table + i * REMAP_ENTRY_BYTES;
    put_u64 (p, entries[i].sector);
    put_u32 (p + 8, entries[i].spare);
    put_u32 (p + 12, entries[i].state);
  }
}

uint32_t
remap_table_crc_start (const unsigned char *header_buf)
{
  return crc32c_update (0, header_buf, CRC_OFFSET);
}

uint32_t
remap_table_crc_add (uint32_t crc, const unsigned char *table_part,
                     uint32_t n)
{
  return crc32c_update (crc, table_part, (size_t) n * REMAP_ENTRY_BYTES);
}

static uint32_t
copy_checksum (const unsigned char *header_buf, const unsigned char *table,
               uint32_t entry_count)
{
  return remap_table_crc_add (remap_table_crc_start (header_buf), table,
                              entry_count);
}

void
remap_header_encode (const struct remap_header *h,
                     const unsigned char *table, unsigned char *buf)
{
  memset (buf, 0, REMAP_HEADER_BYTES);
  geometry_encode (&h->geo, buf);
  put_u32 (buf + 140, h->copy_index);
  put_u64 (buf + 144, h->generation);
  put_u32 (buf + 152, h->entry_count);
  put_u32 (buf + 156, h->location);
  for (int i = 0; i < REMAP_NR_COUNTERS; i++)
    put_u64 (buf + 160 + 8*i, h->counters[i]);
  put_u32 (buf + CRC_OFFSET, copy_checksum (buf, table, h->entry_count));
}

enum remap_decode_status
remap_header_decode (const unsigned char *buf, struct remap_header *h)
{
  struct remap_geometry *g = &h->geo, expect;
  char why[256];

  memset (h, 0, sizeof *h);
  if (memcmp (buf, REMAP_MAGIC, REMAP_MAGIC_LEN) != 0)
    return REMAP_DECODE_NO_MAGIC;
  if (get_u32 (buf + 16) != REMAP_FORMAT_VERSION)
    return REMAP_DECODE_BAD_VERSION;
  if (get_u32 (buf + GEOMETRY_BYTES) !=
      crc32c_update (0, buf, GEOMETRY_BYTES))
    return REMAP_DECODE_BAD_GEOMETRY;

  g->header_bytes = get_u32 (buf + 20);
  g->sector_size = get_u32 (buf + 24);
  g->internal = get_u32 (buf + 28) & FLAG_INTERNAL;
  g->disk_size = get_u64 (buf + 32);
  g->export_size = get_u64 (buf + 40);
  g->region_offset = get_u64 (buf + 48);
  g->region_size = get_u64 (buf + 56);
  g->spare_offset = get_u64 (buf + 64);
  g->spare_count = get_u32 (buf + 72);
  g->entry_capacity = get_u32 (buf + 76);
  g->table_bytes = get_u64 (buf + 80);
  for (int i = 0; i < REMAP_COPIES; i++) {
    g->header_offset[i] = get_u64 (buf + 88 + 8*i);
    g->table_offset[i] = get_u64 (buf + 104 + 8*i);
  }
  memcpy (g->uuid, buf + 120, sizeof g->uuid);

  /* A geometry we would not have written is not trusted, even with a
   * good checksum: recompute it from its own inputs and compare.
   */
  if (remap_geometry_compute (&expect, g->internal, g->disk_size,
                              g->sector_size, g->spare_count,
                              why, sizeof why) == -1)
    return REMAP_DECODE_BAD_GEOMETRY;
  memcpy (expect.uuid, g->uuid, sizeof g->uuid);
  g->data_sectors = expect.data_sectors;
  if (!remap_geometry_equal (&expect, g))
    return REMAP_DECODE_BAD_GEOMETRY;

  h->copy_index = get_u32 (buf + 140);
  h->generation = get_u64 (buf + 144);
  h->entry_count = get_u32 (buf + 152);
  h->location = get_u32 (buf + 156);
  for (int i = 0; i < REMAP_NR_COUNTERS; i++)
    h->counters[i] = get_u64 (buf + 160 + 8*i);
  h->table_crc = get_u32 (buf + CRC_OFFSET);
  uint32_t first, n;
  if (h->copy_index >= REMAP_COPIES ||
      h->entry_count > g->entry_capacity ||
      (h->location != REMAP_LOCATION_HOME &&
       !remap_relocation_slot (g, h->location - 1, &first, &n)))
    return REMAP_DECODE_BAD_CHECKSUM;
  return REMAP_DECODE_OK;
}

enum remap_decode_status
remap_entries_decode (const struct remap_header *h,
                      const unsigned char *header_buf,
                      const unsigned char *table,
                      struct remap_entry *entries)
{
  if (copy_checksum (header_buf, table, h->entry_count) != h->table_crc)
    return REMAP_DECODE_BAD_CHECKSUM;
  return remap_entries_decode_part (h, table, 0, h->entry_count, entries);
}

enum remap_decode_status
remap_entries_decode_part (const struct remap_header *h,
                           const unsigned char *table_part,
                           uint32_t first, uint32_t n,
                           struct remap_entry *entries)
{
  const struct remap_geometry *g = &h->geo;

  for (uint32_t i = first; i < first + n; i++) {
    const unsigned char *p =
      table_part + (size_t) (i - first) * REMAP_ENTRY_BYTES;
    struct remap_entry *e = &entries[i];
    const struct remap_entry *prev = i > 0 ? &entries[i-1] : NULL;

    e->sector = get_u64 (p);
    e->spare = get_u32 (p + 8);
    e->state = get_u32 (p + 12);
    switch (e->state) {
    case REMAP_STATE_REMAPPED:
    case REMAP_STATE_PENDING:
      if (e->sector >= g->data_sectors ||
          (prev && (prev->state == REMAP_STATE_RETIRED ||
                    e->sector <= prev->sector)))
        return REMAP_DECODE_BAD_ENTRIES;
      if (e->state == REMAP_STATE_REMAPPED ? e->spare >= g->spare_count
          : e->spare != REMAP_NO_SPARE && e->spare != REMAP_LOST_DATA)
        return REMAP_DECODE_BAD_ENTRIES;
      break;
    case REMAP_STATE_RETIRED:
      if (e->sector != REMAP_NO_SECTOR || e->spare >= g->spare_count ||
          (prev && prev->state == REMAP_STATE_RETIRED &&
           e->spare <= prev->spare))
        return REMAP_DECODE_BAD_ENTRIES;
      break;
    default:
      return REMAP_DECODE_BAD_ENTRIES;
    }
  }
  return REMAP_DECODE_OK;
}
