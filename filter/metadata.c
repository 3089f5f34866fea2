/* nbdkit-remap: the metadata copies on disk (see metadata.h).
 *
 * Load picks the newest copy that passes every check.  A store with
 * our magic but no usable copy is reported as damaged and never
 * treated as blank: the caller refuses to start rather than format
 * over it.
 *
 * The store may be untrusted (a spare file another account could
 * write): a header is believed only as far as the store's real size
 * allows, before anything is allocated for it, and a table is read
 * and checksummed a chunk at a time, so a forged header cannot make a
 * load allocate more than the store holds.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "errseq.h"
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

/* Table entries read at a time.  Before its checksum is known, a
 * load holds one chunk and the entries that decoded well so far, so
 * what a header says costs memory only as far as the store really
 * holds a table that looks right.
 */
#define TABLE_CHUNK_ENTRIES 16384       /* 256 KiB */

/* Reads, checksums and decodes the table of the copy whose header
 * (already decoded from hbuf) is h, a chunk at a time.  On success
 * *entries is allocated.
 */
static enum remap_decode_status
read_table (const struct remap_io *store, const struct remap_header *h,
            const unsigned char *hbuf, uint64_t table_offset,
            struct remap_entry **entries)
{
  const uint32_t count = h->entry_count;
  const uint32_t chunk = count < TABLE_CHUNK_ENTRIES ? count
    : TABLE_CHUNK_ENTRIES;
  CLEANUP_FREE unsigned char *buf = malloc ((size_t) chunk * REMAP_ENTRY_BYTES
                                            + 1);
  struct remap_entry *e = malloc (sizeof *e), *bigger;
  size_t allocated = 1;
  uint32_t crc = remap_table_crc_start (hbuf);
  enum remap_decode_status st = REMAP_DECODE_OK;
  int err;

  if (buf == NULL || e == NULL)
    st = REMAP_DECODE_UNREADABLE;
  for (uint32_t done = 0, n; st != REMAP_DECODE_UNREADABLE && done < count;
       done += n) {
    n = count - done < chunk ? count - done : chunk;
    if (remap_io_pread_all (store, buf, (uint64_t) n * REMAP_ENTRY_BYTES,
                            table_offset + (uint64_t) done * REMAP_ENTRY_BYTES,
                            &err) == -1) {
      st = REMAP_DECODE_UNREADABLE;
      break;
    }
    crc = remap_table_crc_add (crc, buf, n);
    /* After a bad entry, only the checksum goes on: it decides which
     * of the two problems is reported.
     */
    if (st != REMAP_DECODE_OK)
      continue;
    if (done + n > allocated) {
      size_t want = allocated * 2 > done + n ? allocated * 2 : done + n;
      if (want > count)
        want = count;
      bigger = realloc (e, want * sizeof *e);
      if (bigger == NULL) {
        st = REMAP_DECODE_UNREADABLE;
        break;
      }
      e = bigger;
      allocated = want;
    }
    st = remap_entries_decode_part (h, buf, done, n, e);
  }
  if (st != REMAP_DECODE_UNREADABLE && crc != h->table_crc)
    st = REMAP_DECODE_BAD_CHECKSUM;
  if (st != REMAP_DECODE_OK) {
    free (e);
    e = NULL;
  }
  *entries = e;
  return st;
}

/* Reads and fully checks the copy whose header is at header_offset
 * and table at table_offset, against geometry geo, in a store of
 * store_size bytes.  On success *entries is allocated.  An I/O error
 * makes the copy unreadable, not the load fail: another copy may
 * still be fine.
 */
static enum remap_decode_status
read_copy (const struct remap_io *store, uint64_t store_size,
           const struct remap_geometry *geo,
           uint64_t header_offset, uint64_t table_offset,
           struct remap_header *h, struct remap_entry **entries)
{
  unsigned char hbuf[REMAP_HEADER_BYTES];
  enum remap_decode_status st;
  int err;

  *entries = NULL;
  if (header_offset > store_size ||
      store_size - header_offset < REMAP_HEADER_BYTES)
    return REMAP_DECODE_PAST_END;
  if (store->pread (store->opaque, hbuf, REMAP_HEADER_BYTES,
                    header_offset, 0, &err) == -1)
    return REMAP_DECODE_UNREADABLE;
  st = remap_header_decode (hbuf, h);
  if (st != REMAP_DECODE_OK)
    return st;
  /* A copy from another format of the region is not this region's. */
  if (!remap_geometry_equal (&h->geo, geo))
    return REMAP_DECODE_BAD_GEOMETRY;
  /* Nothing is allocated for a table the store cannot hold. */
  if (table_offset > store_size ||
      (store_size - table_offset) / REMAP_ENTRY_BYTES < h->entry_count)
    return REMAP_DECODE_PAST_END;
  return read_table (store, h, hbuf, table_offset, entries);
}

/* Whether the region a header describes fits the store: every size
 * and offset used later comes from it.  On a disk the whole region
 * must be there.  A spare file may end before copy B (a cut tail
 * loses only that copy, which is then rewritten), but every spare
 * must be there: a spare past the end would read as zeros, not as
 * the data it holds.  (A table past the end is refused by read_copy,
 * before anything is allocated for it.)
 */
static bool
region_fits (const struct remap_geometry *g, uint64_t store_size)
{
  if (g->internal)
    return g->region_offset <= store_size &&
      g->region_size <= store_size - g->region_offset;
  return g->spare_offset <= store_size &&
    (store_size - g->spare_offset) / g->sector_size >= g->spare_count;
}

/* Finds a trustworthy geometry: from header B (whose position does
 * not depend on the geometry), else from header A (at offset 0 of a
 * spare file, or where the caller's parameters put it on the disk).
 * *status is OK, or the first problem seen if none is usable.
 */
static void
find_geometry (const struct remap_io *store, uint64_t store_size,
               bool internal, uint32_t sector_size, uint32_t spare_count,
               struct remap_geometry *geo,
               enum remap_decode_status *status, uint64_t *b_probed,
               uint64_t *a_probed)
{
  unsigned char hbuf[REMAP_HEADER_BYTES];
  struct remap_header h;
  enum remap_decode_status st;
  struct remap_geometry expect;
  char why[256];
  int err;

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
                      &err) == -1)
      st = REMAP_DECODE_UNREADABLE;
    else
      st = remap_header_decode (hbuf, &h);
    if (st == REMAP_DECODE_OK &&
        (h.geo.internal != internal || h.geo.header_offset[1] != (uint64_t) off))
      st = REMAP_DECODE_BAD_GEOMETRY;
    if (st == REMAP_DECODE_OK && !region_fits (&h.geo, store_size))
      st = REMAP_DECODE_PAST_END;
    if (st == REMAP_DECODE_OK) {
      *geo = h.geo;
      *status = st;
      return;
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
      return;
    a_offset = expect.header_offset[0];
  }
  *a_probed = a_offset;
  if (store_size < a_offset + REMAP_HEADER_BYTES)
    return;
  if (store->pread (store->opaque, hbuf, REMAP_HEADER_BYTES, a_offset, 0,
                    &err) == -1)
    st = REMAP_DECODE_UNREADABLE;
  else
    st = remap_header_decode (hbuf, &h);
  if (st == REMAP_DECODE_OK &&
      (h.geo.internal != internal || h.geo.header_offset[0] != a_offset))
    st = REMAP_DECODE_BAD_GEOMETRY;
  /* A spare file too short for the spares its header A describes was
   * truncated, or forged.
   */
  if (st == REMAP_DECODE_OK && !region_fits (&h.geo, store_size))
    st = REMAP_DECODE_PAST_END;
  if (st == REMAP_DECODE_OK) {
    *geo = h.geo;
    *status = st;
  }
  /* A header A that would do but for the store's size says more than
   * what the probe for header B found at the (short) store's end.
   */
  else if (*status == REMAP_DECODE_NO_MAGIC || st == REMAP_DECODE_PAST_END)
    *status = st;
}

/* True if a sector entry or a retired spare lies in [first, first+n):
 * a table that points there owns those spares, so no copy of the
 * metadata may live there.
 */
static bool
entries_use_spares (const struct remap_entry *entries, size_t nr_entries,
                    uint32_t first, uint32_t n)
{
  for (size_t e = 0; e < nr_entries; e++)
    if (entries[e].state != REMAP_STATE_PENDING &&
        entries[e].spare >= first && entries[e].spare - first < n)
      return true;
  return false;
}

void
remap_metadata_load (const struct remap_io *store, uint64_t store_size,
                     bool internal, uint32_t sector_size,
                     uint32_t spare_count, struct remap_load_result *r)
{
  struct remap_geometry geo;
  enum remap_decode_status st;
  int best = -1;

  memset (r, 0, sizeof *r);
  r->copy[0].offset = r->copy[1].offset = REMAP_NOT_LOCATED;
  find_geometry (store, store_size, internal, sector_size, spare_count,
                 &geo, &st, &r->copy[1].offset, &r->copy[0].offset);
  if (st == REMAP_DECODE_NO_MAGIC) {
    r->found = REMAP_FOUND_NOTHING;
    return;
  }
  if (st != REMAP_DECODE_OK) {
    r->found = REMAP_FOUND_DAMAGED;
    for (int i = 0; i < REMAP_COPIES; i++)
      r->copy[i].status = st;
    return;
  }

  /* Every place a copy may be: the two homes, then the slots. */
  struct remap_header h[REMAP_COPIES], found;
  struct remap_entry *entries[REMAP_COPIES] = { NULL }, *found_entries;
  for (int i = 0; i < REMAP_COPIES; i++) {
    r->copy[i].offset = geo.header_offset[i];
    r->copy[i].location = REMAP_LOCATION_HOME;
  }
  for (uint32_t place = 0; place < REMAP_COPIES + REMAP_RELOCATION_SLOTS;
       place++) {
    bool home = place < REMAP_COPIES;
    uint32_t location = home ? REMAP_LOCATION_HOME
      : place - REMAP_COPIES + 1;
    uint64_t hoff, toff;
    uint32_t first, n;

    if (!home && !remap_relocation_slot (&geo, location - 1, &first, &n))
      break;
    remap_copy_offsets (&geo, home ? (int) place : 0, location, &hoff, &toff);
    st = read_copy (store, store_size, &geo, hoff, toff, &found,
                    &found_entries);
    /* A copy counts only where it says it is; slots normally hold
     * data, so what is not a copy there is not an error.
     */
    if (st == REMAP_DECODE_OK &&
        (found.location != location ||
         (home && found.copy_index != place)))
      st = REMAP_DECODE_BAD_GEOMETRY;
    if (st != REMAP_DECODE_OK) {
      free (found_entries);
      if (home)
        r->copy[place].status = st;
      continue;
    }
    int i = found.copy_index;
    if (entries[i] && h[i].generation >= found.generation) {
      free (found_entries);
      continue;
    }
    free (entries[i]);
    entries[i] = found_entries;
    h[i] = found;
    r->copy[i] = (struct remap_copy_report) {
      .status = REMAP_DECODE_OK, .offset = hoff, .location = location,
      .generation = found.generation,
    };
  }
  for (int i = 0; i < REMAP_COPIES; i++)
    if (entries[i] && (best == -1 || h[i].generation > h[best].generation))
      best = i;
  if (best == -1) {
    r->found = REMAP_FOUND_DAMAGED;
    return;
  }
  /* A copy in a slot whose spares the newest table gives to sectors
   * was abandoned and overwritten since: it is not a copy any more.
   */
  for (int i = 0; i < REMAP_COPIES; i++) {
    uint32_t first, n;
    if (i == best || entries[i] == NULL ||
        r->copy[i].location == REMAP_LOCATION_HOME)
      continue;
    remap_relocation_slot (&geo, r->copy[i].location - 1, &first, &n);
    if (entries_use_spares (entries[best], h[best].entry_count, first, n)) {
      free (entries[i]);
      entries[i] = NULL;
      r->copy[i] = (struct remap_copy_report) {
        .status = REMAP_DECODE_BAD_CHECKSUM,
        .offset = geo.header_offset[i], .location = REMAP_LOCATION_HOME,
      };
    }
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
                    "%scopy %c at offset %" PRIu64 "%s: valid, generation %"
                    PRIu64, i ? "; " : "", 'A' + i, c->offset,
                    c->location == REMAP_LOCATION_HOME ? ""
                    : " (moved to spare sectors)", c->generation);
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

void
remap_metadata_adopt (struct remap_metadata *md,
                      const struct remap_load_result *lr)
{
  md->geo = lr->header.geo;
  md->generation = lr->header.generation;
  memcpy (md->counters, lr->header.counters, sizeof md->counters);
  for (int i = 0; i < REMAP_COPIES; i++) {
    md->copy_valid[i] = lr->copy[i].status == REMAP_DECODE_OK &&
      lr->copy[i].generation == lr->header.generation;
    md->location[i] = lr->copy[i].status == REMAP_DECODE_OK
      ? lr->copy[i].location : REMAP_LOCATION_HOME;
  }
}

/* Writes copy i where it lives: its table, then its header, then a
 * flush.
 */
static int
write_copy (struct remap_metadata *md, int i, struct remap_header *h,
            const unsigned char *table, uint64_t table_write_len,
            unsigned char *hslot, int *err)
{
  const struct remap_io *store = md->store;
  uint64_t header_offset, table_offset;

  h->copy_index = i;
  h->location = md->location[i];
  remap_copy_offsets (&md->geo, i, md->location[i], &header_offset,
                      &table_offset);
  remap_header_encode (h, table, hslot);
  /* From here until the flush, this copy may not hold the newest
   * table: the next update must write it first.
   */
  md->copy_valid[i] = false;
  if (aborting (md, err) ||
      metadata_pwrite (store, table, table_write_len, table_offset,
                       err) == -1 ||
      aborting (md, err) ||
      metadata_pwrite (store, hslot, md->geo.header_bytes, header_offset,
                       err) == -1 ||
      aborting (md, err) ||
      remap_io_flush (store, err) == -1)
    return -1;
  md->copy_valid[i] = true;
  return 0;
}

/* Writes copy i into the first free relocation slot that takes the
 * write, leaving where it lives untouched.  A slot that fails is not
 * tried again; the slot the copy leaves goes back to the pool.
 */
static int
move_copy (struct remap_metadata *md, int i,
           const struct remap_entry *entries, size_t nr_entries,
           struct remap_header *h, const unsigned char *table,
           uint64_t table_write_len, unsigned char *hslot, int *err)
{
  const uint32_t old = md->location[i];
  uint32_t first, n, old_first, old_n;

  for (uint32_t k = 0; remap_relocation_slot (&md->geo, k, &first, &n); k++) {
    if ((md->failed_slots & (1u << k)) || k + 1 == old)
      continue;
    /* The other copy's slot is taken, so is never offered here; nor is
     * a spare released since the table was snapshot.
     */
    if (entries_use_spares (entries, nr_entries, first, n) ||
        md->take_run (md->run_opaque, first, n) == -1)
      continue;
    __atomic_store_n (&md->location[i], k + 1, __ATOMIC_RELAXED);
    if (write_copy (md, i, h, table, table_write_len, hslot, err) == 0) {
      if (old != REMAP_LOCATION_HOME &&
          remap_relocation_slot (&md->geo, old - 1, &old_first, &old_n))
        md->release_run (md->run_opaque, old_first, old_n);
      return 0;
    }
    __atomic_store_n (&md->location[i], old, __ATOMIC_RELAXED);
    md->release_run (md->run_opaque, first, n);
    if (*err == ESHUTDOWN)
      return -1;
    md->failed_slots |= 1u << k;
  }
  return -1;
}

/* Whether copy i is the only one holding the newest durable table
 * (the one loaded or last written, or the one this update already
 * wrote).
 */
static bool
sole_valid_copy (const struct remap_metadata *md, int i)
{
  if (!md->copy_valid[i])
    return false;
  for (int j = 0; j < REMAP_COPIES; j++)
    if (j != i && md->copy_valid[j])
      return false;
  return true;
}

/* Writes copy i of an update.  The sole valid copy is never written
 * over where it lies: a crash during that write would leave no valid
 * copy at all.  It goes to a free relocation slot instead, and when
 * none takes it, it stays as it is, valid, and the write fails: its
 * table (older, but the newest durable one) is what a restart loads.
 * Any other copy is written where it lives, and moves to a slot if
 * that fails with an I/O error.
 */
static int
write_one (struct remap_metadata *md, int i,
           const struct remap_entry *entries, size_t n,
           struct remap_header *h, const unsigned char *table,
           uint64_t table_write_len, unsigned char *hslot, int *err)
{
  const uint32_t at = md->location[i];

  if (sole_valid_copy (md, i)) {
    *err = EIO;
    if (md->take_run &&
        move_copy (md, i, entries, n, h, table, table_write_len, hslot,
                   err) == 0) {
      md->moved_sole |= 1u << i;
      return 0;
    }
    md->copy_valid[i] = true;
    return -1;
  }
  if (write_copy (md, i, h, table, table_write_len, hslot, err) == 0)
    return 0;
  if (*err == ESHUTDOWN || md->take_run == NULL)
    return -1;
  if (at != REMAP_LOCATION_HOME)
    md->failed_slots |= 1u << (at - 1);
  return move_copy (md, i, entries, n, h, table, table_write_len, hslot,
                    err);
}

static int
write_table (struct remap_metadata *md, const struct remap_entry *entries,
             size_t n, bool *degraded, int *err)
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
  md->moved_sole = 0;
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

  /* A copy that was not written (error, or stopped) stays marked
   * stale, so that the next update writes it first; the sole holder
   * of the newest table is only ever written elsewhere (write_one).
   */
  for (k = 0; k < REMAP_COPIES; k++) {
    if (write_one (md, order[k], entries, n, &h, table, table_write_len,
                   hslot, err) == 0)
      written++;
    else if (!first_err)
      first_err = *err;
  }
  if (written == 0) {
    *err = first_err ? first_err : EIO;
    return -1;
  }
  *degraded = written < REMAP_COPIES;
  md->generation = h.generation;
  return 0;
}

/* Tries of a table write whose flushes went well while another party
 * heard a writeback error of the store.
 */
#define TABLE_WRITE_TRIES 4

/* The store's descriptor (the spare file, the shared plugin context)
 * tells each writeback error once: if a client's FUA spare write or
 * flush heard one while this table was written, this table's good
 * flush proves nothing, so it is written again (errseq.c).  Writing
 * the same entries again is harmless.
 */
int
remap_metadata_write (struct remap_metadata *md,
                      const struct remap_entry *entries, size_t n,
                      bool *degraded, int *err)
{
  for (int tries = 1; ; tries++) {
    uint64_t errors = remap_errseq_errors (md->store->errseq);

    if (write_table (md, entries, n, degraded, err) == -1)
      return -1;
    if (remap_errseq_errors (md->store->errseq) == errors)
      return 0;
    /* What the copies hold is not known. */
    for (int i = 0; i < REMAP_COPIES; i++)
      md->copy_valid[i] = false;
    if (tries == TABLE_WRITE_TRIES) {
      nbdkit_error ("remap: the store reported writeback errors to other "
                    "requests during each of %d metadata writes, so none "
                    "is known to be durable", tries);
      *err = EIO;
      return -1;
    }
    nbdkit_debug ("remap: a writeback error of the store reached another "
                  "request while the table was written: writing it again");
  }
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
  for (int i = 0; i < REMAP_COPIES; i++) {
    md->copy_valid[i] = false;
    md->location[i] = REMAP_LOCATION_HOME;
  }
  md->failed_slots = 0;
  if (remap_metadata_write (md, NULL, 0, &degraded, err) == -1)
    return -1;
  if (degraded) {
    *err = EIO;
    return -1;
  }
  return 0;
}
