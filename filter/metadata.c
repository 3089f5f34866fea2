/* nbdkit-remap: the metadata copies on disk (see metadata.h).
 *
 * Load picks the newest copy that passes every check.  A store with
 * our magic but no usable copy is reported as damaged and never
 * treated as blank: the caller refuses to start rather than format
 * over it.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cleanup.h"
#include "metadata.h"

/* -D remap.crash_after=N (tests only): the process exits abruptly
 * after N bytes of a metadata update, leaving a torn write behind.
 */
int remap_debug_crash_after = 0;
static uint64_t update_bytes;    /* of the update in progress */

static int
metadata_pwrite (const struct remap_io *store, const void *buf,
                 uint64_t len, uint64_t offset, int *err)
{
  if (remap_debug_crash_after > 0 &&
      update_bytes + len >= (uint64_t) remap_debug_crash_after) {
    uint64_t part = remap_debug_crash_after - update_bytes;
    if (part)
      remap_io_pwrite_all (store, buf, part, offset, err);
    _exit (99);
  }
  update_bytes += len;
  return remap_io_pwrite_all (store, buf, len, offset, err);
}

/* Reads and fully checks copy i of geometry geo.  On success *entries
 * is allocated.  I/O errors are reported as a bad checksum of that
 * copy: the other copy may still be fine.
 */
static enum remap_decode_status
read_copy (const struct remap_io *store, const struct remap_geometry *geo,
           int i, struct remap_header *h, struct remap_entry **entries)
{
  CLEANUP_FREE unsigned char *hbuf = malloc (REMAP_HEADER_BYTES);
  CLEANUP_FREE unsigned char *table = NULL;
  enum remap_decode_status st;
  uint64_t table_len;
  int err;

  *entries = NULL;
  if (hbuf == NULL)
    return REMAP_DECODE_BAD_CHECKSUM;
  if (store->pread (store->opaque, hbuf, REMAP_HEADER_BYTES,
                    geo->header_offset[i], 0, &err) == -1)
    return REMAP_DECODE_BAD_CHECKSUM;
  st = remap_header_decode (hbuf, h);
  if (st != REMAP_DECODE_OK)
    return st;
  /* A copy from another format of the region is not this region's. */
  if (!remap_geometry_equal (&h->geo, geo) || h->copy_index != (uint32_t) i)
    return REMAP_DECODE_BAD_GEOMETRY;

  table_len = (uint64_t) h->entry_count * REMAP_ENTRY_BYTES;
  table = malloc (table_len ? table_len : 1);
  *entries = malloc ((h->entry_count ? h->entry_count : 1) *
                     sizeof **entries);
  if (table == NULL || *entries == NULL ||
      remap_io_pread_all (store, table, table_len,
                          geo->table_offset[i], &err) == -1) {
    free (*entries);
    *entries = NULL;
    return REMAP_DECODE_BAD_CHECKSUM;
  }
  st = remap_entries_decode (h, hbuf, table, *entries);
  if (st != REMAP_DECODE_OK) {
    free (*entries);
    *entries = NULL;
  }
  return st;
}

/* Finds a trustworthy geometry: from header B (whose position does
 * not depend on the geometry), else from header A (at offset 0 of a
 * spare file, or where the caller's parameters put it on the disk).
 * *status is OK, or the first problem seen if none is usable.
 */
static int
find_geometry (const struct remap_io *store, uint64_t store_size,
               bool internal, uint32_t sector_size, uint32_t spare_count,
               struct remap_geometry *geo,
               enum remap_decode_status *status, uint64_t *b_probed,
               uint64_t *a_probed, int *err)
{
  unsigned char hbuf[REMAP_HEADER_BYTES];
  struct remap_header h;
  enum remap_decode_status st;
  struct remap_geometry expect;
  char why[256];

  *status = REMAP_DECODE_NO_MAGIC;
  for (uint32_t s = REMAP_MIN_SECTOR_SIZE; s <= REMAP_MAX_SECTOR_SIZE; s *= 2) {
    int64_t off;

    if (sector_size && s != sector_size)
      continue;
    off = remap_last_header_offset (store_size, s);
    if (off < 0)
      continue;
    if (s == (sector_size ? sector_size : REMAP_DEFAULT_SECTOR_SIZE))
      *b_probed = off;
    if (store->pread (store->opaque, hbuf, REMAP_HEADER_BYTES, off, 0,
                      err) == -1)
      return -1;
    st = remap_header_decode (hbuf, &h);
    if (st == REMAP_DECODE_OK &&
        (h.geo.internal != internal || h.geo.header_offset[1] != (uint64_t) off))
      st = REMAP_DECODE_BAD_GEOMETRY;
    if (st == REMAP_DECODE_OK) {
      *geo = h.geo;
      *status = st;
      return 0;
    }
    if (*status == REMAP_DECODE_NO_MAGIC)
      *status = st;
  }

  /* Header B is unusable: try header A, where the parameters (or the
   * defaults) put it.
   */
  uint64_t a_offset = 0;
  if (internal) {
    if (!spare_count ||
        remap_geometry_compute (&expect, internal, store_size,
                                sector_size ? sector_size
                                : REMAP_DEFAULT_SECTOR_SIZE,
                                spare_count, why, sizeof why) == -1)
      return 0;
    a_offset = expect.header_offset[0];
  }
  *a_probed = a_offset;
  if (store_size < a_offset + REMAP_HEADER_BYTES)
    return 0;
  if (store->pread (store->opaque, hbuf, REMAP_HEADER_BYTES, a_offset, 0,
                    err) == -1)
    return -1;
  st = remap_header_decode (hbuf, &h);
  if (st == REMAP_DECODE_OK &&
      (h.geo.internal != internal || h.geo.header_offset[0] != a_offset))
    st = REMAP_DECODE_BAD_GEOMETRY;
  if (st == REMAP_DECODE_OK) {
    *geo = h.geo;
    *status = st;
  }
  else if (*status == REMAP_DECODE_NO_MAGIC)
    *status = st;
  return 0;
}

int
remap_metadata_load (const struct remap_io *store, uint64_t store_size,
                     bool internal, uint32_t sector_size,
                     uint32_t spare_count, struct remap_load_result *r,
                     int *err)
{
  struct remap_geometry geo;
  enum remap_decode_status st;
  int best = -1;

  memset (r, 0, sizeof *r);
  r->copy[0].offset = r->copy[1].offset = REMAP_NOT_LOCATED;
  if (find_geometry (store, store_size, internal, sector_size, spare_count,
                     &geo, &st, &r->copy[1].offset, &r->copy[0].offset,
                     err) == -1)
    return -1;
  if (st == REMAP_DECODE_NO_MAGIC) {
    r->found = REMAP_FOUND_NOTHING;
    return 0;
  }
  if (st != REMAP_DECODE_OK) {
    r->found = REMAP_FOUND_DAMAGED;
    for (int i = 0; i < REMAP_COPIES; i++)
      r->copy[i].status = st;
    return 0;
  }


  struct remap_header h[REMAP_COPIES];
  struct remap_entry *entries[REMAP_COPIES];
  for (int i = 0; i < REMAP_COPIES; i++) {
    r->copy[i].offset = geo.header_offset[i];
    r->copy[i].status = read_copy (store, &geo, i, &h[i], &entries[i]);
    if (r->copy[i].status == REMAP_DECODE_OK) {
      r->copy[i].generation = h[i].generation;
      if (best == -1 || h[i].generation > h[best].generation)
        best = i;
    }
  }
  if (best == -1) {
    r->found = REMAP_FOUND_DAMAGED;
    return 0;
  }
  r->found = REMAP_FOUND_VALID;
  r->header = h[best];
  r->entries = entries[best];
  for (int i = 0; i < REMAP_COPIES; i++) {
    if (i != best)
      free (entries[i]);
    if (r->copy[i].status != REMAP_DECODE_OK ||
        r->copy[i].generation != h[best].generation)
      r->needs_repair = true;
  }
  return 0;
}

void
remap_metadata_describe (const struct remap_load_result *r,
                         char *buf, size_t len)
{
  size_t used = 0;

  buf[0] = '\0';
  for (int i = 0; i < REMAP_COPIES && used < len; i++) {
    const struct remap_copy_report *c = &r->copy[i];
    int n;

    if (c->offset == REMAP_NOT_LOCATED)
      n = snprintf (buf + used, len - used,
                    "%scopy %c: not located (give remap-sector-size and "
                    "remap-spare-size as formatted to find it)",
                    i ? "; " : "", 'A' + i);
    else if (c->status == REMAP_DECODE_OK)
      n = snprintf (buf + used, len - used,
                    "%scopy %c at offset %" PRIu64 ": valid, generation %"
                    PRIu64, i ? "; " : "", 'A' + i, c->offset,
                    c->generation);
    else
      n = snprintf (buf + used, len - used,
                    "%scopy %c at offset %" PRIu64 ": %s", i ? "; " : "",
                    'A' + i, c->offset, remap_decode_strerror (c->status));
    if (n < 0)
      break;
    used += n;
  }
}

static bool
aborting (struct remap_metadata *md, int *err)
{
  if (md->abort_fn && md->abort_fn (md->abort_opaque)) {
    *err = ESHUTDOWN;
    return true;
  }
  return false;
}

/* Writes copy i: its table, then its header, then a flush. */
static int
write_copy (struct remap_metadata *md, int i, struct remap_header *h,
            const unsigned char *table, uint64_t table_write_len,
            unsigned char *hslot, int *err)
{
  const struct remap_io *store = md->store;

  h->copy_index = i;
  remap_header_encode (h, table, hslot);
  /* From here until the flush, this copy may not hold the newest
   * table: the next update must write it first.
   */
  md->copy_valid[i] = false;
  if (aborting (md, err) ||
      metadata_pwrite (store, table, table_write_len,
                       md->geo.table_offset[i], err) == -1 ||
      aborting (md, err) ||
      metadata_pwrite (store, hslot, md->geo.header_bytes,
                       md->geo.header_offset[i], err) == -1 ||
      aborting (md, err) ||
      remap_io_flush (store, err) == -1)
    return -1;
  md->copy_valid[i] = true;
  return 0;
}

int
remap_metadata_write (struct remap_metadata *md,
                      const struct remap_entry *entries, size_t n,
                      bool *degraded, int *err)
{
  const struct remap_geometry *geo = &md->geo;
  uint64_t table_len = (uint64_t) n * REMAP_ENTRY_BYTES;
  /* Whole sectors, so the plugin never has to read-modify-write. */
  uint64_t table_write_len = remap_round_up (table_len ? table_len : 1,
                                       geo->sector_size);
  CLEANUP_FREE unsigned char *table = NULL;
  CLEANUP_FREE unsigned char *hslot = NULL;
  struct remap_header h;
  int order[REMAP_COPIES], k = 0, written = 0, first_err = 0;

  *degraded = false;
  if (n > geo->entry_capacity) {
    *err = ENOSPC;
    return -1;
  }
  table = calloc (1, table_write_len);
  hslot = calloc (1, geo->header_bytes);
  if (table == NULL || hslot == NULL) {
    *err = ENOMEM;
    return -1;
  }
  remap_entries_encode (entries, n, table);

  memset (&h, 0, sizeof h);
  h.geo = *geo;
  h.generation = md->generation + 1;
  h.entry_count = n;
  memcpy (h.counters, md->counters, sizeof h.counters);

  update_bytes = 0;
  /* Spare data first: nothing may point at a spare whose data could
   * still be lost.
   */
  if (aborting (md, err) || remap_io_flush (md->store, err) == -1)
    return -1;

  for (int i = 0; i < REMAP_COPIES; i++)
    if (!md->copy_valid[i])
      order[k++] = i;
  for (int i = 0; i < REMAP_COPIES; i++)
    if (md->copy_valid[i])
      order[k++] = i;

  /* A copy that was not written (error, or stopped) is marked stale,
   * so that the next update writes it first: the copy holding the
   * newest table is never the one being overwritten.
   */
  for (k = 0; k < REMAP_COPIES; k++) {
    if (write_copy (md, order[k], &h, table, table_write_len,
                    hslot, err) == 0)
      written++;
    else {
      if (!first_err)
        first_err = *err;
      md->copy_valid[order[k]] = false;
    }
  }
  if (written == 0) {
    *err = first_err ? first_err : EIO;
    return -1;
  }
  *degraded = written < REMAP_COPIES;
  md->generation = h.generation;
  return 0;
}

int
remap_metadata_format (struct remap_metadata *md, int *err)
{
  bool degraded;
  size_t got = 0;

  while (got < sizeof md->geo.uuid) {
    ssize_t r = getrandom (md->geo.uuid + got, sizeof md->geo.uuid - got, 0);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      *err = errno;
      return -1;
    }
    got += r;
  }
  md->generation = 0;
  memset (md->counters, 0, sizeof md->counters);
  for (int i = 0; i < REMAP_COPIES; i++)
    md->copy_valid[i] = false;
  if (remap_metadata_write (md, NULL, 0, &degraded, err) == -1)
    return -1;
  if (degraded) {
    *err = EIO;
    return -1;
  }
  return 0;
}
