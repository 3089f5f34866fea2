/* remapctl: the remap region of a disk that was grown (internal mode):
 * find-region looks for it, move-region moves it to the new end.
 *
 * After a grow, the region sits where the old end was, and the filter,
 * which looks only at the end, refuses the disk.  Finding it means
 * reading the whole disk (holes skipped), which the server never does
 * at startup: hence an explicit offline command, with a progress bar
 * on a terminal.  A header found that way is trusted only after the
 * whole region loads from it, as the filter would load it on a disk
 * of the old size.
 *
 * The move is crash-safe because nothing of the old region is touched
 * until the new one is durable, and the new one cannot overlap it:
 *   1. copy the data of every used spare to the same spare of the new
 *      region (same sector size, same spare count, so every table
 *      entry stays as it is), at the new end;
 *   2. write both metadata copies there (remap_metadata_write flushes
 *      the spare data first, then each copy, then flushes again), with
 *      the old identity and generation + 1;
 *   3. load it back from the new end, as the server will;
 *   4. only then zero the old region, headers first.
 * The server looks at the end first.  A kill before 3 leaves the new
 * end without a valid copy (nothing, or a torn copy) and the old
 * region intact: the server refuses the disk and move-region, run
 * again, starts over from the old region.  A kill during 4 leaves the
 * new region valid, which the server loads; what is left of the old
 * one is inside the export, unused.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "probe.h"
#include "remapctl.h"

/* The best old region found by a scan. */
struct candidate {
  bool found;
  uint64_t offset;                      /* of the header that led to it */
  struct remap_load_result lr;          /* loaded as on the old disk */
};

struct scan {
  struct candidate best;
  uint64_t shrunk_from;                 /* a header for a larger disk */
  uint64_t disk_size;
  bool tty;
  unsigned last_pct;
};

static void
progress (void *vp, uint64_t done, uint64_t total)
{
  struct scan *s = vp;
  unsigned pct = total ? done * 100 / total : 100;

  if (!s->tty || pct == s->last_pct)
    return;
  s->last_pct = pct;
  fprintf (stderr, "\rscanning %s: %3u%% (%" PRIu64 " of %" PRIu64
           " MiB)", target_name (), pct, done >> 20, total >> 20);
  fflush (stderr);
}

/* A header of another disk size: load the region it describes as the
 * filter would on a disk of that size, and keep the newest that loads.
 */
static void
consider (void *vp, uint64_t offset, const struct remap_header *h)
{
  struct scan *s = vp;
  struct remap_load_result lr;

  /* The region of a larger disk cannot be loaded from this one. */
  if (h->geo.disk_size > s->disk_size) {
    s->shrunk_from = h->geo.disk_size;
    return;
  }
  if (h->geo.disk_size == s->disk_size ||
      (s->best.found &&
       s->best.lr.header.geo.disk_size == h->geo.disk_size))
    return;
  remap_metadata_load (target.store, h->geo.disk_size, true,
                       h->geo.sector_size, h->geo.spare_count, &lr);
  if (lr.found != REMAP_FOUND_VALID) {
    free (lr.entries);
    return;
  }
  if (s->best.found &&
      s->best.lr.header.generation >= lr.header.generation) {
    free (lr.entries);
    return;
  }
  if (s->best.found)
    free (s->best.lr.entries);
  s->best = (struct candidate) { .found = true, .offset = offset, .lr = lr };
}

/* Scans the whole disk: *c is the newest region of a smaller disk
 * that loads (c->found may be false); returns the size of a larger
 * disk a header was made for, or 0.
 */
static uint64_t
find_old_region (struct candidate *c)
{
  struct scan s = {
    .disk_size = target.store_size,
    .tty = isatty (STDERR_FILENO),
    .last_pct = 101,
  };

  remap_scan_headers (target.store, 0, target.store_size, consider,
                      progress, &s);
  if (s.tty)
    fputc ('\n', stderr);
  *c = s.best;
  return s.shrunk_from;
}

static int
require_internal (const char *cmd)
{
  if (!target.internal) {
    error_msg ("%s: only internal mode (--disk or --uri) has a region "
               "that moves with the disk's end; a spare file does not",
               cmd);
    return EXIT_ERROR;
  }
  return EXIT_OK;
}

/* True (having said so) if the region is at the end already. */
static bool
region_at_end (void)
{
  struct remap_load_result lr;

  load_metadata (&lr);
  free (lr.entries);
  /* A grow by less than a sector leaves the last header slot where it
   * was: the region found there is at the end only if made for this
   * size.
   */
  if (lr.found != REMAP_FOUND_VALID ||
      lr.header.geo.disk_size != target.store_size)
    return false;
  printf ("the remap region of %s is already at its end (a disk of %"
          PRIu64 " bytes): nothing to do\n", target_name (),
          target.store_size);
  return true;
}

/* After a scan found no region of a smaller disk. */
static int
not_found (uint64_t shrunk_from)
{
  if (shrunk_from)
    error_msg ("%s shrank: it holds remap metadata made for a disk of %"
               PRIu64 " bytes, but is %" PRIu64 " bytes now; give it back "
               "its size to use its remaps", target_name (), shrunk_from,
               target.store_size);
  else
    error_msg ("no remap region found anywhere on %s", target_name ());
  return EXIT_ERROR;
}

static void
describe (const struct candidate *c)
{
  const struct remap_geometry *g = &c->lr.header.geo;

  printf ("found a remap region made for a disk of %" PRIu64 " bytes at "
          "offset %" PRIu64 " (%" PRIu64 " bytes; generation %" PRIu64
          ", %" PRIu32 " entries, %" PRIu32 " spare sectors of %" PRIu32
          " bytes); %s is now %" PRIu64 " bytes\n", g->disk_size,
          g->region_offset, g->region_size, c->lr.header.generation,
          c->lr.header.entry_count, g->spare_count, g->sector_size,
          target_name (), target.store_size);
}

/* What find-region and move-region do first: open the disk, and look
 * for the region a grow left behind.  Returns 0 with c->found set and
 * the region described (the caller frees c->lr.entries), or 0 with
 * c->found false when the region is already at the end, or an exit
 * status (nothing found, or the disk shrank).
 */
static int
locate_old_region (enum need need, const char *cmd, struct candidate *c)
{
  uint64_t shrunk_from;
  int r;

  c->found = false;
  if ((r = open_target (need)) != EXIT_OK ||
      (r = require_internal (cmd)) != EXIT_OK)
    return r;
  if (region_at_end ())
    return EXIT_OK;
  shrunk_from = find_old_region (c);
  if (!c->found)
    return not_found (shrunk_from);
  describe (c);
  return EXIT_OK;
}

int
cmd_find_region (int argc, char **argv)
{
  struct candidate c;
  int r;

  (void) argc; (void) argv;
  if ((r = locate_old_region (NEED_READ, "find-region", &c)) != EXIT_OK ||
      !c.found)
    return r;
  printf ("the disk was grown: 'remapctl --disk=%s move-region' moves the "
          "region to the new end\n", target_name ());
  free (c.lr.entries);
  return EXIT_OK;
}

/* Copies the data of every remapped sector's spare to the same spare
 * of the new region.
 */
static int
copy_spares (const struct remap_load_result *lr,
             const struct remap_geometry *ng)
{
  const struct remap_geometry *og = &lr->header.geo;
  CLEANUP_FREE unsigned char *buf = malloc (og->sector_size);
  int err;

  if (buf == NULL) {
    error_msg ("out of memory");
    return EXIT_ERROR;
  }
  for (uint32_t i = 0; i < lr->header.entry_count; i++) {
    const struct remap_entry *e = &lr->entries[i];
    if (e->state != REMAP_STATE_REMAPPED)
      continue;
    if (remap_io_pread_all (target.store, buf, og->sector_size,
                            og->spare_offset +
                            (uint64_t) e->spare * og->sector_size,
                            &err) == -1) {
      /* The old region stays as it was: nothing is lost yet. */
      error_msg ("reading spare %" PRIu32 " (sector %" PRIu64 ") of the "
                 "old region failed: %s; nothing was changed",
                 e->spare, e->sector, strerror (err));
      return EXIT_ERROR;
    }
    if (remap_io_pwrite_all (target.store, buf, ng->sector_size,
                             ng->spare_offset +
                             (uint64_t) e->spare * ng->sector_size,
                             &err) == -1) {
      error_msg ("writing spare %" PRIu32 " of the new region failed: %s; "
                 "the old region is unchanged", e->spare, strerror (err));
      return EXIT_ERROR;
    }
  }
  return EXIT_OK;
}

/* Zeros [offset, offset+len), with the store's zero if it has one. */
static int
zero_range (uint64_t offset, uint64_t len, int *err)
{
  const uint32_t chunk = 1024 * 1024;
  CLEANUP_FREE unsigned char *zeros = calloc (1, chunk);

  if (zeros == NULL) {
    *err = ENOMEM;
    return -1;
  }
  while (len > 0) {
    uint32_t n = len > chunk ? chunk : len;
    int r = target.store->zero
      ? target.store->zero (target.store->opaque, n, offset, 0, err)
      : target.store->pwrite (target.store->opaque, zeros, n, offset, 0, err);
    if (r == -1)
      return -1;
    offset += n;
    len -= n;
  }
  return 0;
}

int
cmd_move_region (int argc, char **argv)
{
  struct candidate c;
  struct remap_geometry ng, og;
  struct remap_metadata md;
  struct remap_load_result check;
  char why[256];
  bool degraded;
  int r, err;

  (void) argc; (void) argv;
  if ((r = locate_old_region (NEED_WRITE_STORE, "move-region", &c)) !=
      EXIT_OK || !c.found)
    return r;
  og = c.lr.header.geo;
  if (remap_geometry_compute (&ng, true, target.store_size, og.sector_size,
                              og.spare_count, why, sizeof why) == -1) {
    error_msg ("cannot lay out the region at the new end: %s", why);
    free (c.lr.entries);
    return EXIT_ERROR;
  }
  /* The new region must not overlap the old one, which stays intact
   * until the new one is durable.
   */
  if (ng.region_offset < og.disk_size) {
    error_msg ("%s grew by %" PRIu64 " bytes, too little for a region of "
               "%" PRIu64 " bytes to move past the old one without "
               "overwriting it; grow it by another %" PRIu64 " bytes, "
               "then run move-region again", target_name (),
               target.store_size - og.disk_size, ng.region_size,
               og.disk_size - ng.region_offset);
    free (c.lr.entries);
    return EXIT_ERROR;
  }
  memcpy (ng.uuid, og.uuid, sizeof ng.uuid);

  /* 1 and 2: spare data, then the metadata, at the new end. */
  if ((r = copy_spares (&c.lr, &ng)) != EXIT_OK) {
    free (c.lr.entries);
    return r;
  }
  memset (&md, 0, sizeof md);
  md.store = target.store;
  remap_metadata_adopt (&md, &c.lr);
  md.geo = ng;
  for (int i = 0; i < REMAP_COPIES; i++) {
    md.copy_valid[i] = false;
    md.location[i] = REMAP_LOCATION_HOME;
  }
  if (remap_metadata_write (&md, c.lr.entries, c.lr.header.entry_count,
                            &degraded, &err) == -1 || degraded) {
    error_msg ("writing the metadata at the new end failed: %s; the old "
               "region is unchanged, run move-region again",
               strerror (degraded ? EIO : err));
    free (c.lr.entries);
    return EXIT_ERROR;
  }

  /* 3: as the server will find it. */
  remap_metadata_load (target.store, target.store_size, true,
                       og.sector_size, og.spare_count, &check);
  free (check.entries);
  if (check.found != REMAP_FOUND_VALID ||
      check.header.entry_count != c.lr.header.entry_count ||
      check.needs_repair) {
    error_msg ("the metadata written at the new end does not load back; "
               "the old region is unchanged");
    free (c.lr.entries);
    return EXIT_ERROR;
  }
  printf ("moved the remap region to offset %" PRIu64 " (generation %"
          PRIu64 "); export size now %" PRIu64 " bytes\n", ng.region_offset,
          check.header.generation, ng.export_size);

  /* 4: the old headers, then the rest of the old region. */
  if (zero_range (og.header_offset[1], og.header_bytes, &err) == -1 ||
      zero_range (og.header_offset[0], og.header_bytes, &err) == -1 ||
      zero_range (og.region_offset, og.region_size, &err) == -1 ||
      remap_io_flush (target.store, &err) == -1)
    error_msg ("warning: clearing the old region at offset %" PRIu64
               " failed: %s (harmless: the new region is in use, the old "
               "one is now export space)", og.region_offset, strerror (err));
  free (c.lr.entries);
  return EXIT_OK;
}
