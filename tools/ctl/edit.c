/* remapctl: the subcommands that write the table: repair, format,
 * add, pending, unmap.
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
cmd_repair (int argc, char **argv)
{
  struct remap_load_result lr, after;
  struct remap_metadata md;
  bool degraded, was_bad[REMAP_COPIES];
  int r, err;

  (void) argc; (void) argv;
  if ((r = open_target (NEED_WRITE_STORE)) != EXIT_OK)
    return r;
  if ((r = load_metadata (&lr)) != EXIT_OK)
    return r;
  if (lr.found == REMAP_FOUND_DAMAGED) {
    require_valid (&lr);
    error_msg ("refusing to repair: there is no valid copy to repair from");
    free (lr.entries);
    return EXIT_DAMAGED;
  }
  if ((r = require_valid (&lr)) != EXIT_OK)
    return r;
  if (!lr.needs_repair) {
    printf ("nothing to repair: both copies are valid and at generation %"
            PRIu64 "\n", lr.header.generation);
    free (lr.entries);
    return EXIT_OK;
  }

  memset (&md, 0, sizeof md);
  md.store = target.store;
  remap_metadata_adopt (&md, &lr);
  for (int i = 0; i < REMAP_COPIES; i++)
    was_bad[i] = !md.copy_valid[i];
  if (remap_metadata_write (&md, lr.entries, lr.header.entry_count,
                            &degraded, &err) == -1) {
    for (int i = 0; i < REMAP_COPIES; i++)
      if (err == EIO && md.copy_valid[i])
        error_msg ("copy %s of the metadata of %s could not be written, "
                   "and copy %s, the only valid copy, is not written over "
                   "in place: nothing was changed.  Start the filter "
                   "writable to move copy %s to spare sectors",
                   copy_name (1 - i), target_name (), copy_name (i),
                   copy_name (1 - i));
    error_msg ("rewriting the metadata of %s failed: %s", target_name (),
               strerror (err));
    free (lr.entries);
    return EXIT_ERROR;
  }
  free (lr.entries);
  if (degraded) {
    error_msg ("a copy of the metadata of %s could not be written; the "
               "table is still durable in the other copy", target_name ());
    return EXIT_ERROR;
  }

  /* Read it back, as the filter would at its next start. */
  if ((r = load_metadata (&after)) != EXIT_OK)
    return r;
  if (after.found != REMAP_FOUND_VALID || after.needs_repair) {
    char what[512];
    remap_metadata_describe (&after, what, sizeof what);
    error_msg ("the repaired metadata does not read back right (%s)", what);
    free (after.entries);
    return EXIT_ERROR;
  }
  for (int i = 0; i < REMAP_COPIES; i++)
    if (was_bad[i])
      printf ("rewrote copy %s from copy %s\n", copy_name (i),
              copy_name (1 - i));
  printf ("repaired: both copies are valid and at generation %" PRIu64
          " with %" PRIu32 " entries\n", after.header.generation,
          after.header.entry_count);
  free (after.entries);
  return EXIT_OK;
}

int
cmd_format (int argc, char **argv)
{
  struct remap_load_result lr;
  struct remap_options opt;
  struct remap_device *dev;
  uint64_t disk_size;
  char uuid[33];
  int r;

  (void) argc; (void) argv;
  if ((r = open_target (NEED_FORMAT)) != EXIT_OK)
    goto out;
  if ((r = load_metadata (&lr)) != EXIT_OK)
    goto out;
  free (lr.entries);
  if (lr.found == REMAP_FOUND_VALID) {
    if (!force_opt) {
      error_msg ("%s already holds remap metadata (generation %" PRIu64
                 ", %" PRIu32 " entries); formatting would lose every remap "
                 "in it.  Use 'format --force' to do it anyway",
                 target_name (), lr.header.generation,
                 lr.header.entry_count);
      r = EXIT_ERROR;
      goto out;
    }
  }
  else if (lr.found == REMAP_FOUND_DAMAGED && !force_opt) {
    error_msg ("%s holds damaged remap metadata; formatting would lose "
               "whatever remaps it still records.  See 'remapctl check', "
               "or use 'format --force' to discard it", target_name ());
    r = EXIT_ERROR;
    goto out;
  }

  remap_options_init (&opt);
  opt.internal = target.internal;
  opt.sector_size = sector_size_opt;
  opt.spare_bytes = spare_bytes_opt;
  opt.spare_percent_x100 = spare_pct_x100_opt;
  opt.format = force_opt;
  opt.readonly = false;
  opt.store_name = target_name ();
  disk_size = target.internal ? target.store_size : target.disk.size;
  dev = remap_device_open (&opt, target.store, target.store_size, disk_size);
  if (dev == NULL) {
    if (!force_opt && lr.found == REMAP_FOUND_NOTHING)
      error_msg ("not formatted (with remapctl, 'format --force' formats "
                 "anyway, destroying what is there)");
    r = EXIT_ERROR;
    goto out;
  }
  uuid_hex (dev->geo.uuid, uuid);
  printf ("formatted %s: %s mode, %" PRIu32 " spare sectors of %" PRIu32
          " bytes, export size %" PRIu64 " bytes, identity %s\n",
          target_name (), dev->geo.internal ? "internal" : "external",
          dev->geo.spare_count, dev->geo.sector_size, dev->geo.export_size,
          uuid);
  remap_device_free (dev);
  r = EXIT_OK;

 out:
  if (r != EXIT_OK)
    close_target (true);
  return r;
}

/* The start of add, pending and unmap: the sectors from the command
 * line, the table opened for writing, the sectors checked against it.
 */
static int
begin_range_change (int argc, char **argv, enum need need,
                    struct remap_ranges *ranges, struct remap_device **devp)
{
  int r;

  if ((r = parse_sector_args (argc, argv, ranges)) != EXIT_OK ||
      (r = begin_change (need, devp)) != EXIT_OK)
    return r;
  if ((r = check_ranges (*devp, ranges)) != EXIT_OK)
    remap_device_free (*devp);
  return r;
}

int
cmd_add (int argc, char **argv)
{
  struct remap_ranges ranges = { .v = NULL };
  struct remap_device *dev;
  uint64_t nr_pending = 0, first_pending = 0;
  int r, err;

  if ((r = begin_range_change (argc, argv, NEED_WRITE_BOTH, &ranges,
                                &dev)) != EXIT_OK)
    goto out;
  for (size_t i = 0; i < ranges.len && r == EXIT_OK; i++) {
    const struct remap_range *rg = &ranges.v[i];
    if (remap_device_add (dev, target.origin, rg->first, rg->last,
                          &err) == -1) {
      error_msg ("remapping sectors %" PRIu64 "-%" PRIu64 " failed: %s",
                 rg->first, rg->last, strerror (err));
      r = EXIT_ERROR;
    }
  }
  /* What the core could not read it marked pending instead. */
  for (size_t i = 0; i < ranges.len; i++)
    for (uint64_t s = ranges.v[i].first; s <= ranges.v[i].last; s++) {
      struct remap_entry e;
      if (!remap_table_lookup (dev->table, s, &e))
        continue;
      if (e.state == REMAP_STATE_PENDING) {
        if (nr_pending++ == 0)
          first_pending = s;
      }
      else if (e.state == REMAP_STATE_REMAPPED)
        nbdkit_debug ("sector %" PRIu64 " is remapped to spare %" PRIu32,
                      s, e.spare);
      if (s == UINT64_MAX)
        break;
    }
  if (nr_pending)
    error_msg ("warning: %" PRIu64 " sector(s) could not be read and were "
               "marked pending instead of remapped (first: %" PRIu64 ")",
               nr_pending, first_pending);
  r = finish_change (dev, r);
 out:
  remap_ranges_free (&ranges);
  return r;
}

int
cmd_pending (int argc, char **argv)
{
  struct remap_ranges ranges = { .v = NULL };
  struct remap_device *dev;
  int r, err;

  if ((r = begin_range_change (argc, argv, NEED_WRITE_STORE, &ranges,
                                &dev)) != EXIT_OK)
    goto out;
  for (size_t i = 0; i < ranges.len && r == EXIT_OK; i++)
    if (remap_device_mark_pending (dev, ranges.v[i].first, ranges.v[i].last,
                                   &err) == -1) {
      error_msg ("marking sectors %" PRIu64 "-%" PRIu64 " pending failed: "
                 "%s", ranges.v[i].first, ranges.v[i].last, strerror (err));
      r = EXIT_ERROR;
    }
  r = finish_change (dev, r);
 out:
  remap_ranges_free (&ranges);
  return r;
}

int
cmd_unmap (int argc, char **argv)
{
  struct remap_ranges ranges = { .v = NULL };
  struct remap_device *dev;
  uint64_t done = 0;
  int r, err;

  if ((r = begin_range_change (argc, argv, NEED_WRITE_BOTH, &ranges,
                                &dev)) != EXIT_OK)
    goto out;
  /* A sector named on its own must be remapped; a range stands for the
   * remapped sectors in it.  Checked before anything changes.
   */
  for (size_t i = 0; i < ranges.len; i++) {
    const struct remap_range *rg = &ranges.v[i];
    struct remap_entry e;
    if (rg->first != rg->last)
      continue;
    if (!remap_table_lookup (dev->table, rg->first, &e)) {
      error_msg ("sector %" PRIu64 " is not remapped", rg->first);
      r = EXIT_ERROR;
    }
    else if (e.state != REMAP_STATE_REMAPPED) {
      error_msg ("sector %" PRIu64 " is pending, not remapped: there is no "
                 "spare to move back (a write through the filter recovers "
                 "it)", rg->first);
      r = EXIT_ERROR;
    }
  }
  if (r != EXIT_OK) {
    remap_device_free (dev);
    goto out;
  }
  for (size_t i = 0; i < ranges.len; i++) {
    uint64_t s = ranges.v[i].first;
    struct remap_entry e;

    while (s <= ranges.v[i].last &&
           remap_table_next (dev->table, s, ranges.v[i].last, &e)) {
      if (e.state == REMAP_STATE_REMAPPED) {
        if (remap_device_unmap (dev, target.origin, e.sector, &err) == 0) {
          done++;
          nbdkit_debug ("sector %" PRIu64 " moved back from spare %" PRIu32,
                        e.sector, e.spare);
        }
        else if (err == EIO) {
          error_msg ("sector %" PRIu64 " did not keep its data when "
                     "written back (or its spare could not be read): it "
                     "stays remapped to spare %" PRIu32, e.sector, e.spare);
          r = EXIT_ERROR;
        }
        else {
          error_msg ("unmapping sector %" PRIu64 " failed: %s", e.sector,
                     strerror (err));
          r = EXIT_ERROR;
        }
      }
      if (e.sector == UINT64_MAX)
        break;
      s = e.sector + 1;
    }
  }
  if (done == 0 && r == EXIT_OK)
    error_msg ("warning: no remapped sector in the given ranges");
  r = finish_change (dev, r);
 out:
  remap_ranges_free (&ranges);
  return r;
}

