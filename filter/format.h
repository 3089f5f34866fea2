/* nbdkit-remap: the on-disk metadata format and the layout of the
 * remap region.
 *
 * The region (at the end of the plugin's disk, or the whole spare
 * file) is laid out as
 *
 *   [header A][table A][spare 0 ... spare N-1][table B][header B]
 *
 * so that header B always sits in the last whole header slot of the
 * store, where a later start finds it without knowing the geometry.
 * A copy whose home sectors fail a write moves to a relocation slot:
 * a run of spares at the top of the pool holding [header][table].
 * Every field is little-endian.  The functions here only convert
 * between memory and byte buffers; they do no I/O.
 */
#ifndef REMAP_FORMAT_H
#define REMAP_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "table.h"

#define REMAP_MAGIC "nbdkit-remap\r\n\032\n"  /* 16 bytes, no NUL */
#define REMAP_MAGIC_LEN 16
#define REMAP_FORMAT_VERSION 1
#define REMAP_HEADER_BYTES 4096
#define REMAP_ENTRY_BYTES 16
#define REMAP_COPIES 2
#define REMAP_NR_COUNTERS 32
#define REMAP_DEFAULT_SECTOR_SIZE 4096
#define REMAP_MIN_SECTOR_SIZE 512
#define REMAP_MAX_SECTOR_SIZE 65536
/* Table slots hold twice the spares (remaps plus pending sectors) and
 * a fixed allowance, so a table never outgrows its slot.
 */
#define REMAP_EXTRA_ENTRIES 1024
#define REMAP_MIN_SPARES 1
#define REMAP_MAX_SPARES ((UINT32_MAX - REMAP_EXTRA_ENTRIES) / 2)
/* Relocation slots: few enough that a load probes every one of them,
 * so the newest copy is always found without following pointers that
 * a failed write may have left stale.
 */
#define REMAP_RELOCATION_SLOTS 4
/* Where a copy lives: its home, or relocation slot (location - 1). */
#define REMAP_LOCATION_HOME 0

struct remap_geometry {
  uint32_t sector_size;
  bool internal;                /* region on the plugin's own disk */
  uint64_t disk_size;           /* plugin size when formatted */
  uint64_t export_size;
  uint64_t data_sectors;        /* sectors exported; last may be partial */
  uint64_t region_offset;       /* in the store */
  uint64_t region_size;
  uint64_t header_bytes;        /* one header slot */
  uint64_t table_bytes;         /* one table slot */
  uint64_t spare_offset;        /* spare 0, in the store */
  uint32_t spare_count;
  uint32_t entry_capacity;
  uint64_t header_offset[REMAP_COPIES];
  uint64_t table_offset[REMAP_COPIES];
  uint8_t uuid[16];             /* binds the metadata to its disk */
};

/* One decoded header. */
struct remap_header {
  struct remap_geometry geo;
  uint32_t copy_index;
  uint32_t location;            /* REMAP_LOCATION_HOME or slot + 1 */
  uint64_t generation;
  uint32_t entry_count;
  uint32_t table_crc;           /* checksum over header and entries */
  uint64_t counters[REMAP_NR_COUNTERS];
};

enum remap_decode_status {
  REMAP_DECODE_OK = 0,
  REMAP_DECODE_NO_MAGIC,        /* not ours (or never formatted) */
  REMAP_DECODE_BAD_VERSION,     /* ours, from a newer release */
  REMAP_DECODE_BAD_GEOMETRY,    /* geometry checksum or values wrong */
  REMAP_DECODE_BAD_CHECKSUM,    /* header or table checksum wrong */
  REMAP_DECODE_BAD_ENTRIES,     /* checksum right, contents impossible */
  REMAP_DECODE_UNREADABLE,      /* the store failed to read it */
  REMAP_DECODE_PAST_END,        /* says it lies past the store's end */
};
extern const char *remap_decode_strerror (enum remap_decode_status s);

/* n rounded up to a multiple of align (a sector or slot size). */
static inline uint64_t
remap_round_up (uint64_t n, uint64_t align)
{
  return (n + align - 1) / align * align;
}

/* Header slot size for a sector size. */
extern uint64_t remap_header_slot (uint32_t sector_size);

/* Where header B lives for an internal region on a disk of this size
 * and sector size: the last whole header slot.  Returns -1 if the disk
 * is too small to hold one.
 */
extern int64_t remap_last_header_offset (uint64_t disk_size,
                                         uint32_t sector_size);

/* Lays out a region.  In internal mode the region ends at the last
 * whole sector of the disk and the export is what comes before it; in
 * external mode the region is the whole store and the export is the
 * whole disk.  Returns -1 with an explanation in why[] if it does not
 * fit.
 */
extern int remap_geometry_compute (struct remap_geometry *geo,
                                   bool internal, uint64_t disk_size,
                                   uint32_t sector_size,
                                   uint32_t spare_count,
                                   char *why, size_t why_len);

/* Encodes a header for entry_count entries whose encoded bytes are
 * table[0 .. entry_count*REMAP_ENTRY_BYTES).  Fills the table
 * checksum.  buf is REMAP_HEADER_BYTES long.
 */
extern void remap_header_encode (const struct remap_header *h,
                                 const unsigned char *table,
                                 unsigned char *buf);
extern void remap_entries_encode (const struct remap_entry *entries,
                                  size_t n, unsigned char *table);

/* Decodes and checks the magic, version and geometry of a header. */
extern enum remap_decode_status
remap_header_decode (const unsigned char *buf, struct remap_header *h);
/* Checks the checksum of a decoded header against its entries, then
 * decodes and validates the entries into entries[] (entry_count long).
 */
extern enum remap_decode_status
remap_entries_decode (const struct remap_header *h,
                      const unsigned char *header_buf,
                      const unsigned char *table,
                      struct remap_entry *entries);
/* The same in pieces, for a table read a chunk at a time: the
 * checksum starts from the header and adds the encoded entries in
 * order (compare the result with h->table_crc); entries[first ..
 * first+n) are decoded and validated from table_part, with
 * entries[first-1] already decoded.
 */
extern uint32_t remap_table_crc_start (const unsigned char *header_buf);
extern uint32_t remap_table_crc_add (uint32_t crc,
                                     const unsigned char *table_part,
                                     uint32_t n);
extern enum remap_decode_status
remap_entries_decode_part (const struct remap_header *h,
                           const unsigned char *table_part,
                           uint32_t first, uint32_t n,
                           struct remap_entry *entries);

/* The spares that relocation slot k occupies: slot 0 is the top of
 * the pool, slot 1 below it, and so on.  Returns false if the pool is
 * too small for slot k.
 */
extern bool remap_relocation_slot (const struct remap_geometry *geo,
                                   uint32_t k, uint32_t *first_spare,
                                   uint32_t *nr_spares);
/* Where copy i's header and table are when it lives at location. */
extern void remap_copy_offsets (const struct remap_geometry *geo, int i,
                                uint32_t location, uint64_t *header_offset,
                                uint64_t *table_offset);

/* True if two geometries describe the same region. */
extern bool remap_geometry_equal (const struct remap_geometry *a,
                                  const struct remap_geometry *b);

#endif /* REMAP_FORMAT_H */
