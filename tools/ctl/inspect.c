/* remapctl: the subcommands that only read: show, dump, check. */
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

static void
print_counters_text (struct remap_device *dev)
{
  printf ("Counters:\n");
  for (int i = 0; i < REMAP_NR_COUNTERS_USED; i++)
    printf ("  %-20s %" PRIu64 "\n", remap_counter_name (i),
            remap_device_counter (dev, i));
}

static const char *
state_word (uint32_t state)
{
  switch (state) {
  case REMAP_STATE_REMAPPED: return "remapped";
  case REMAP_STATE_PENDING: return "pending";
  case REMAP_STATE_RETIRED: return "retired";
  default: return "unknown";
  }
}

static void
print_show (struct remap_device *dev, const struct remap_load_result *lr)
{
  const struct remap_geometry *g = &dev->geo;
  uint32_t used = remap_spares_used (dev->spares);
  uint32_t retired = remap_spares_retired (dev->spares);
  char uuid[33];

  uuid_hex (g->uuid, uuid);
  printf ("Store:          %s\n", target_name ());
  printf ("Mode:           %s\n", g->internal
          ? "internal (region at the end of the disk)"
          : "external (spare file)");
  printf ("Identity:       %s\n", uuid);
  printf ("Health:         %s\n", remap_health_verdict (dev));
  printf ("Sector size:    %" PRIu32 " bytes\n", g->sector_size);
  printf ("Disk size:      %" PRIu64 " bytes\n", g->disk_size);
  printf ("Export size:    %" PRIu64 " bytes (%" PRIu64 " sectors)\n",
          g->export_size, g->data_sectors);
  printf ("Region:         offset %" PRIu64 ", %" PRIu64 " bytes\n",
          g->region_offset, g->region_size);
  printf ("Spare area:     offset %" PRIu64 "\n", g->spare_offset);
  printf ("Table capacity: %" PRIu32 " entries\n", g->entry_capacity);
  printf ("Generation:     %" PRIu64 "\n", lr->header.generation);
  printf ("Metadata copies:\n");
  print_copies (stdout, lr, "  ");
  printf ("Spares:         %" PRIu32 " total, %" PRIu32 " used, %" PRIu32
          " free, %" PRIu32 " retired\n", g->spare_count, used,
          g->spare_count - used - retired, retired);
  printf ("Pending:        %" PRIu64 " sectors\n", remap_device_pending (dev));
  print_counters_text (dev);
  printf ("Entries:        %" PRIu32 "\n", lr->header.entry_count);
  if (lr->header.entry_count > 0) {
    printf ("  %-20s %-9s %s\n", "SECTOR", "STATE", "SPARE");
    for (uint32_t i = 0; i < lr->header.entry_count; i++) {
      const struct remap_entry *e = &lr->entries[i];
      char sector[32] = "-", spare[32] = "-";
      if (e->state != REMAP_STATE_RETIRED)
        snprintf (sector, sizeof sector, "%" PRIu64, e->sector);
      if (e->state != REMAP_STATE_PENDING)
        snprintf (spare, sizeof spare, "%" PRIu32, e->spare);
      printf ("  %-20s %-9s %s\n", sector, state_word (e->state), spare);
    }
  }
}

static int
print_json (struct remap_device *dev, const struct remap_load_result *lr)
{
  struct remap_buf b = { .p = NULL };
  char uuid[33];

  uuid_hex (dev->geo.uuid, uuid);
  remap_buf_printf (&b, "{\"store\":");
  remap_buf_json_string (&b, target_name ());
  remap_buf_printf (&b, ",\"uuid\":\"%s\",\"copies\":[", uuid);
  for (int i = 0; i < REMAP_COPIES; i++) {
    const struct remap_copy_report *c = &lr->copy[i];
    remap_buf_printf (&b, "%s{\"copy\":\"%s\",\"offset\":%" PRIu64
                      ",\"moved\":%s,\"valid\":%s,\"current\":%s,"
                      "\"state\":", i ? "," : "", copy_name (i), c->offset,
                      c->location == REMAP_LOCATION_HOME ? "false" : "true",
                      c->status == REMAP_DECODE_OK ? "true" : "false",
                      copy_current (lr, i) ? "true" : "false");
    remap_buf_json_string (&b, remap_decode_strerror (c->status));
    if (c->status == REMAP_DECODE_OK)
      remap_buf_printf (&b, ",\"generation\":%" PRIu64, c->generation);
    remap_buf_printf (&b, "}");
  }
  remap_buf_printf (&b, "],\"status\":");
  remap_report_status (dev, &b);
  remap_buf_printf (&b, ",\"list\":");
  remap_report_list (dev, 0, UINT64_MAX, &b);
  remap_buf_printf (&b, "}\n");
  if (b.failed) {
    remap_buf_free (&b);
    error_msg ("out of memory");
    return EXIT_ERROR;
  }
  fwrite (b.p, 1, b.len, stdout);
  remap_buf_free (&b);
  return EXIT_OK;
}

static int
report (bool json)
{
  struct remap_load_result lr;
  struct remap_device *dev;
  int r;

  if ((r = load_valid (NEED_READ, &lr)) != EXIT_OK)
    return r;
  warn_if_in_use ();
  check_disk_size (&lr.header.geo);
  dev = make_view (&lr);
  if (dev == NULL) {
    error_msg ("cannot use the table of %s (see above)", target_name ());
    free (lr.entries);
    return EXIT_ERROR;
  }
  if (json)
    r = print_json (dev, &lr);
  else {
    print_show (dev, &lr);
    if (lr.needs_repair)
      error_msg ("warning: the metadata needs repair: run 'remapctl "
                 "repair'");
  }
  remap_device_free (dev);
  free (lr.entries);
  return r;
}

int
cmd_show (int argc, char **argv)
{
  (void) argc; (void) argv;
  return report (json_opt);
}

int
cmd_dump (int argc, char **argv)
{
  (void) argc; (void) argv;
  return report (true);
}

int
cmd_check (int argc, char **argv)
{
  struct remap_load_result lr;
  int r;

  (void) argc; (void) argv;
  if ((r = open_target (NEED_READ)) != EXIT_OK)
    return r;
  if ((r = load_metadata (&lr)) != EXIT_OK)
    return r;
  switch (lr.found) {
  case REMAP_FOUND_NOTHING:
    printf ("%s: no remap metadata found\n", target_name ());
    free (lr.entries);
    return require_valid (&lr);
  case REMAP_FOUND_DAMAGED:
    printf ("%s:\n", target_name ());
    print_copies (stdout, &lr, "  ");
    printf ("damaged: no copy of the remap metadata can be used; "
            "'remapctl repair' cannot help (every remap it held is lost "
            "unless a copy is restored from a backup)\n");
    free (lr.entries);
    return EXIT_DAMAGED;
  case REMAP_FOUND_VALID:
    break;
  }
  warn_if_in_use ();
  check_disk_size (&lr.header.geo);
  printf ("%s:\n", target_name ());
  print_copies (stdout, &lr, "  ");
  if (!lr.needs_repair) {
    printf ("healthy: both copies are valid and at generation %" PRIu64
            "\n", lr.header.generation);
    r = EXIT_OK;
  }
  else {
    int good = copy_current (&lr, 0) ? 0 : 1;
    int bad = 1 - good;
    printf ("repair needed: copy %s is %s; copy %s (generation %" PRIu64
            ") is good and will be used.  Run 'remapctl repair'\n",
            copy_name (bad),
            lr.copy[bad].status == REMAP_DECODE_OK ? "stale" : "bad",
            copy_name (good), lr.header.generation);
    r = EXIT_REPAIR;
  }
  free (lr.entries);
  return r;
}

