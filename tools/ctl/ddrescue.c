/* remapctl: GNU ddrescue mapfiles in and out: import-ddrescue,
 * export-ddrescue.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remapctl.h"

int
cmd_import_ddrescue (int argc, char **argv)
{
  struct remap_ranges bytes = { .v = NULL };
  struct remap_device *dev;
  uint64_t marked = 0;
  char why[512];
  FILE *fp;
  int r, err;

  (void) argc;
  fp = fopen (argv[0], "r");
  if (fp == NULL) {
    error_msg ("cannot open %s: %m", argv[0]);
    return EXIT_ERROR;
  }
  r = remap_ddrescue_parse (fp, 1, &bytes, why, sizeof why);
  fclose (fp);
  if (r == -1) {
    error_msg ("%s: %s", argv[0], why);
    remap_ranges_free (&bytes);
    return EXIT_ERROR;
  }
  if ((r = begin_change (NEED_WRITE_STORE, &dev)) != EXIT_OK)
    goto out;
  for (size_t i = 0; i < bytes.len && r == EXIT_OK; i++) {
    uint64_t n;
    switch (remap_device_mark_pending_bytes (dev, bytes.v[i].first,
                                             bytes.v[i].last, &n, &err)) {
    case 0:
      marked += n;
      break;
    case 1:
      error_msg ("warning: %s: the bad area at byte %" PRIu64 " is past "
                 "the end of the export (%" PRIu64 " bytes): ignored",
                 argv[0], bytes.v[i].first, dev->geo.export_size);
      break;
    default:
      error_msg ("marking the bad area at bytes %" PRIu64 "-%" PRIu64
                 " pending failed: %s", bytes.v[i].first, bytes.v[i].last,
                 strerror (err));
      r = EXIT_ERROR;
    }
  }
  nbdkit_debug ("%s: %zu bad areas, %" PRIu64 " sectors marked pending "
                "(sectors already remapped stay remapped)",
                argv[0], bytes.len, marked);
  r = finish_change (dev, r);
 out:
  remap_ranges_free (&bytes);
  return r;
}

static void
map_line (uint64_t pos, uint64_t size, char status)
{
  printf ("0x%08" PRIX64 "  0x%08" PRIX64 "  %c\n", pos, size, status);
}

int
cmd_export_ddrescue (int argc, char **argv)
{
  struct remap_load_result lr;
  const struct remap_geometry *g;
  uint64_t pos = 0;
  int r;

  (void) argc; (void) argv;
  if ((r = load_valid (NEED_READ, &lr)) != EXIT_OK)
    return r;
  warn_if_in_use ();
  check_disk_size (&lr.header.geo);
  g = &lr.header.geo;

  printf ("# Mapfile. Created by remapctl (nbdkit-remap %s)\n",
          PACKAGE_VERSION);
  printf ("# Source: %s, %s mode, sector size %" PRIu32 ", export size %"
          PRIu64 "\n", target_name (), g->internal ? "internal" : "external",
          g->sector_size, g->export_size);
  printf ("# Bad ('-') areas are the remapped and pending sectors.\n");
  printf ("# current_pos  current_status  current_pass\n");
  printf ("0x00000000     +               1\n");
  printf ("#      pos        size  status\n");
  for (uint32_t i = 0; i < lr.header.entry_count; ) {
    const struct remap_entry *e = &lr.entries[i];
    uint64_t first, last, start, end;

    if (e->state != REMAP_STATE_REMAPPED && e->state != REMAP_STATE_PENDING) {
      i++;
      continue;
    }
    /* Merge a run of consecutive bad sectors. */
    first = last = e->sector;
    for (i++; i < lr.header.entry_count; i++) {
      const struct remap_entry *n = &lr.entries[i];
      if ((n->state != REMAP_STATE_REMAPPED &&
           n->state != REMAP_STATE_PENDING) || n->sector != last + 1)
        break;
      last = n->sector;
    }
    start = first * g->sector_size;
    end = (last + 1) * g->sector_size;
    if (end > g->export_size)
      end = g->export_size;
    if (start >= end)
      continue;
    if (start > pos)
      map_line (pos, start - pos, '+');
    map_line (start, end - start, '-');
    pos = end;
  }
  if (pos < g->export_size)
    map_line (pos, g->export_size - pos, '+');
  free (lr.entries);
  if (fflush (stdout) == EOF || ferror (stdout)) {
    error_msg ("writing the mapfile: %m");
    return EXIT_ERROR;
  }
  return EXIT_OK;
}

