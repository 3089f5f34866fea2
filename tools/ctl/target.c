/* remapctl: where the metadata is.  The endpoints (a file or block
 * device, or an NBD export through libnbd), the target they make up,
 * finding and checking the metadata, opening the core's device to
 * change it, and sector lists.
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

#include <libnbd.h>

#include "remapctl.h"

/* ---- Endpoints: a file, a block device, or an NBD export. ---- */



static int
nbd_errno (void)
{
  int e = nbd_get_errno ();
  return e ? e : EIO;
}

static int
nbdio_pread (void *opaque, void *buf, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  struct endpoint *ep = opaque;

  (void) flags;
  if (nbd_pread (ep->nbd, buf, count, offset, 0) == -1) {
    *err = nbd_errno ();
    nbdkit_debug ("%s: %s", ep->name, nbd_get_error ());
    return -1;
  }
  return 0;
}

static int
nbdio_pwrite (void *opaque, const void *buf, uint32_t count,
              uint64_t offset, uint32_t flags, int *err)
{
  struct endpoint *ep = opaque;
  uint32_t f = (flags & REMAP_FLAG_FUA) ? LIBNBD_CMD_FLAG_FUA : 0;

  if (nbd_pwrite (ep->nbd, buf, count, offset, f) == -1) {
    *err = nbd_errno ();
    nbdkit_debug ("%s: %s", ep->name, nbd_get_error ());
    return -1;
  }
  return 0;
}

static int
nbdio_zero (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
            int *err)
{
  struct endpoint *ep = opaque;
  uint32_t f = 0;

  if (flags & REMAP_FLAG_FUA)
    f |= LIBNBD_CMD_FLAG_FUA;
  if (!(flags & REMAP_FLAG_MAY_TRIM))
    f |= LIBNBD_CMD_FLAG_NO_HOLE;
  if (flags & REMAP_FLAG_FAST_ZERO) {
    if (nbd_can_fast_zero (ep->nbd) != 1) {
      *err = ENOTSUP;
      return -1;
    }
    f |= LIBNBD_CMD_FLAG_FAST_ZERO;
  }
  if (nbd_zero (ep->nbd, count, offset, f) == -1) {
    *err = nbd_errno ();
    nbdkit_debug ("%s: %s", ep->name, nbd_get_error ());
    return -1;
  }
  return 0;
}

static int
nbdio_flush (void *opaque, int *err)
{
  struct endpoint *ep = opaque;

  if (nbd_flush (ep->nbd, 0) == -1) {
    *err = nbd_errno ();
    nbdkit_debug ("%s: %s", ep->name, nbd_get_error ());
    return -1;
  }
  return 0;
}

struct extent_answer {
  bool got;
  uint64_t run;
  bool zero;
};

static int
extent_cb (void *user_data, const char *metacontext, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  struct extent_answer *a = user_data;

  (void) offset; (void) error;
  if (a->got || nr_entries < 2 ||
      strcmp (metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
    return 0;
  a->got = true;
  a->run = entries[0];
  a->zero = (entries[1] & LIBNBD_STATE_ZERO) != 0;
  return 0;
}

static int
nbdio_extent (void *opaque, uint32_t count, uint64_t offset, uint64_t *run,
              bool *zero, int *err)
{
  struct endpoint *ep = opaque;
  struct extent_answer a = { .got = false };
  nbd_extent_callback cb = { .callback = extent_cb, .user_data = &a };

  if (nbd_block_status (ep->nbd, count, offset, cb,
                        LIBNBD_CMD_FLAG_REQ_ONE) == -1) {
    *err = nbd_errno ();
    nbdkit_debug ("%s: %s", ep->name, nbd_get_error ());
    return -1;
  }
  if (a.got && a.run > 0) {
    *run = a.run < count ? a.run : count;
    *zero = a.zero;
  }
  else {
    *run = count;
    *zero = false;
  }
  return 0;
}

/* Opens a file or block device, locked (flock) as the filter locks
 * its spare file, so two writers never meet.  Returns 0, or an exit
 * status.
 */
int
open_file (struct endpoint *ep, const char *path, enum access acc,
           bool spare)
{
  unsigned flags = 0;

  memset (ep, 0, sizeof *ep);
  ep->name = path;
  if (acc != ACCESS_READ)
    flags |= REMAP_FILE_WRITE;
  if (acc == ACCESS_CREATE)
    flags |= REMAP_FILE_CREATE;
  if (spare)                    /* must be private; format may empty it */
    flags |= REMAP_FILE_SPARE;
  if (remap_file_open (&ep->file, spare ? "--spare" : "--disk", path,
                       flags) == -1)
    return EXIT_ERROR;
  ep->open = true;
  ep->size = ep->file.size;
  ep->io = ep->file.io;
  return EXIT_OK;
}

int
open_nbd (struct endpoint *ep, const char *uri, enum access acc)
{
  int64_t size;

  memset (ep, 0, sizeof *ep);
  ep->name = uri;
  ep->file.fd = -1;
  ep->nbd = nbd_create ();
  if (ep->nbd == NULL) {
    error_msg ("%s", nbd_get_error ());
    return EXIT_ERROR;
  }
  ep->open = true;
  /* Lets the format check skip holes instead of reading them. */
  if (nbd_add_meta_context (ep->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
      nbd_connect_uri (ep->nbd, uri) == -1) {
    error_msg ("cannot connect to %s: %s", uri, nbd_get_error ());
    return EXIT_ERROR;
  }
  size = nbd_get_size (ep->nbd);
  if (size == -1) {
    error_msg ("%s: %s", uri, nbd_get_error ());
    return EXIT_ERROR;
  }
  ep->size = size;
  if (acc != ACCESS_READ && nbd_is_read_only (ep->nbd) == 1) {
    error_msg ("%s: the NBD export is read-only, but this subcommand "
               "writes to it", uri);
    return EXIT_ERROR;
  }
  ep->nbd_extents =
    nbd_can_meta_context (ep->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  ep->io = (struct remap_io) {
    .opaque = ep,
    .pread = nbdio_pread,
    .pwrite = nbdio_pwrite,
    .zero = nbd_can_zero (ep->nbd) == 1 ? nbdio_zero : NULL,
    .flush = nbd_can_flush (ep->nbd) == 1 ? nbdio_flush : NULL,
    .extent = ep->nbd_extents ? nbdio_extent : NULL,
    .can_fua = nbd_can_fua (ep->nbd) == 1,
  };
  return EXIT_OK;
}

void
close_endpoint (struct endpoint *ep, bool remove_if_created)
{
  if (!ep->open)
    return;
  if (ep->nbd) {
    nbd_shutdown (ep->nbd, 0);
    nbd_close (ep->nbd);
    ep->nbd = NULL;
  }
  remap_file_close (&ep->file, ep->name, remove_if_created);
  ep->open = false;
}

/* ---- The target: where the metadata is, and the data disk. ---- */

struct target target;


int
open_disk (enum access acc)
{
  if (nbd_uri)
    return open_nbd (&target.disk, nbd_uri, acc);
  return open_file (&target.disk, disk_path, acc, false);
}

int
open_target (enum need need)
{
  int r;

  target.internal = spare_path == NULL;
  target.have_disk = disk_path != NULL || nbd_uri != NULL;
  if (target.internal) {
    r = open_disk (need == NEED_READ ? ACCESS_READ : ACCESS_WRITE);
    if (r != EXIT_OK)
      return r;
    target.store = &target.disk.io;
    target.store_size = target.disk.size;
    target.store_name = target.disk.name;
    target.origin = &target.disk.io;
    return EXIT_OK;
  }

  if ((need == NEED_WRITE_BOTH || need == NEED_FORMAT) && !target.have_disk) {
    error_msg ("in external mode (--spare) this subcommand also needs the "
               "data disk: add --disk=IMAGE or --uri=NBD-URI");
    return EXIT_ERROR;
  }
  r = open_file (&target.spare, spare_path,
                 need == NEED_READ ? ACCESS_READ :
                 need == NEED_FORMAT ? ACCESS_CREATE : ACCESS_WRITE, true);
  if (r != EXIT_OK)
    return r;
  target.store = &target.spare.io;
  target.store_size = target.spare.size;
  target.store_name = target.spare.name;
  if (target.have_disk) {
    r = open_disk (need == NEED_WRITE_BOTH ? ACCESS_WRITE : ACCESS_READ);
    if (r != EXIT_OK)
      return r;
    target.origin = &target.disk.io;
  }
  return EXIT_OK;
}

void
close_target (bool remove_created)
{
  close_endpoint (&target.spare, remove_created);
  close_endpoint (&target.disk, false);
}

/* The name users know the table by: the image in internal mode, the
 * spare file in external mode.
 */
const char *
target_name (void)
{
  return target.store_name;
}

/* ---- Finding the metadata. ---- */

/* The spare count the filter would use with the same parameters: only
 * needed to find copy A on a disk whose header B is lost.
 */
static uint32_t
default_spare_count (uint64_t disk_size, uint32_t sector_size)
{
  uint64_t n;

  if (spare_bytes_opt)
    n = (spare_bytes_opt + sector_size - 1) / sector_size;
  else if (spare_pct_x100_opt)
    n = disk_size / sector_size * spare_pct_x100_opt / 10000;
  else {
    n = disk_size / sector_size * REMAP_DEFAULT_SPARE_PERCENT_X100 / 10000;
    if (n < REMAP_DEFAULT_MIN_SPARES)
      n = REMAP_DEFAULT_MIN_SPARES;
  }
  if (n < REMAP_MIN_SPARES || n > REMAP_MAX_SPARES)
    return 0;
  return n;
}

/* Loads the metadata.  Header B is found without any parameter; when
 * it is lost, the core looks for copy A of an internal region where
 * the filter's defaults (or --sector-size and --spare-size) put it.
 */
int
load_metadata (struct remap_load_result *lr)
{
  uint32_t ss = sector_size_opt ? sector_size_opt : REMAP_DEFAULT_SECTOR_SIZE;

  remap_metadata_load (target.store, target.store_size, target.internal,
                       sector_size_opt,
                       default_spare_count (target.store_size, ss), lr);
  nbdkit_debug ("%s: %s", target_name (),
                lr->found == REMAP_FOUND_VALID ? "metadata found" :
                lr->found == REMAP_FOUND_DAMAGED ? "metadata damaged" :
                "no metadata");
  return EXIT_OK;
}

const char *
copy_name (int i)
{
  return i == 0 ? "A" : "B";
}

bool
copy_current (const struct remap_load_result *lr, int i)
{
  return lr->copy[i].status == REMAP_DECODE_OK &&
    lr->copy[i].generation == lr->header.generation;
}

/* One line per copy, in words. */
void
print_copies (FILE *fp, const struct remap_load_result *lr,
              const char *indent)
{
  for (int i = 0; i < REMAP_COPIES; i++) {
    const struct remap_copy_report *c = &lr->copy[i];

    if (c->offset == REMAP_NOT_LOCATED) {
      fprintf (fp, "%scopy %s: not located (give --sector-size and "
               "--spare-size as formatted to find it)\n", indent,
               copy_name (i));
      continue;
    }
    fprintf (fp, "%scopy %s (header at offset %" PRIu64 "%s): ", indent,
             copy_name (i), c->offset,
             c->location == REMAP_LOCATION_HOME ? ""
             : ", moved to spare sectors");
    if (c->status != REMAP_DECODE_OK)
      fprintf (fp, "bad: %s\n", remap_decode_strerror (c->status));
    else if (lr->found == REMAP_FOUND_VALID &&
             c->generation != lr->header.generation)
      fprintf (fp, "stale: valid, generation %" PRIu64 ", but the newest "
               "is %" PRIu64 "\n", c->generation, lr->header.generation);
    else
      fprintf (fp, "valid, generation %" PRIu64 "\n", c->generation);
  }
}

void
uuid_hex (const uint8_t uuid[16], char out[33])
{
  for (int i = 0; i < 16; i++)
    snprintf (out + 2*i, 3, "%02x", uuid[i]);
}

/* Requires usable metadata; explains why not.  Returns 0 or an exit
 * status.
 */
int
require_valid (const struct remap_load_result *lr)
{
  char what[512];

  switch (lr->found) {
  case REMAP_FOUND_VALID:
    return EXIT_OK;
  case REMAP_FOUND_NOTHING:
    error_msg ("%s has no remap metadata (it was never formatted, or it "
               "is not where this tool looked: give --spare=FILE for "
               "external mode, or --sector-size and --spare-size if header "
               "B is lost and they were not the defaults); use "
               "'remapctl format' to create an empty table",
               target_name ());
    return EXIT_ERROR;
  case REMAP_FOUND_DAMAGED:
    remap_metadata_describe (lr, what, sizeof what);
    error_msg ("the remap metadata of %s is damaged and no copy can be "
               "used (%s)", target_name (), what);
    return EXIT_DAMAGED;
  }
  return EXIT_ERROR;
}

int
load_valid (enum need need, struct remap_load_result *lr)
{
  int r;

  if ((r = open_target (need)) != EXIT_OK ||
      (r = load_metadata (lr)) != EXIT_OK)
    return r;
  if ((r = require_valid (lr)) != EXIT_OK) {
    free (lr->entries);
    lr->entries = NULL;
  }
  return r;
}

/* For the read-only subcommands: try the store lock shared for an
 * instant, only to warn that what is on disk may lag behind a running
 * server.  (A subcommand that writes opened the store for writing,
 * which locked it exclusively: filestore.c.)  An NBD export cannot be
 * locked from here.
 */
void
warn_if_in_use (void)
{
  int fd = target.internal ? target.disk.file.fd : target.spare.file.fd;

  if (fd < 0)
    return;
  if (flock (fd, LOCK_SH | LOCK_NB) == 0) {
    flock (fd, LOCK_UN);
    return;
  }
  if (errno == EWOULDBLOCK)
    error_msg ("warning: %s is in use by a running nbdkit (it is locked): "
               "this is the metadata last written to disk, which may lag "
               "behind the server (its remap-control socket reports the "
               "live state)", target_name ());
}

/* In external mode with a data disk given, warn if it is not the disk
 * the spare file was formatted for.
 */
void
check_disk_size (const struct remap_geometry *g)
{
  if (!target.internal && target.have_disk &&
      target.disk.size != g->disk_size)
    error_msg ("warning: %s was formatted for a disk of %" PRIu64 " bytes, "
               "but %s is %" PRIu64 " bytes: it may not be this disk's "
               "spare file", target_name (), g->disk_size,
               target.disk.name, target.disk.size);
}

/* ---- A read-only view of the metadata, for the reports. ---- */

/* The core's read-only device over a load result: no in-use lock, so
 * the reports of report.c print while a server runs, and nothing is
 * ever written through it.
 */
struct remap_device *
make_view (const struct remap_load_result *lr)
{
  struct remap_options opt;

  remap_options_init (&opt);
  opt.internal = lr->header.geo.internal;
  opt.sector_size = lr->header.geo.sector_size;
  opt.store_name = target_name ();
  return remap_device_view (&opt, target.store, lr);
}

/* ---- Opening the device to change it. ---- */

/* Opens the table for writing through the core, exactly as the filter
 * does (which also repairs a stale copy).  The layout is the one just
 * loaded, so that copy A is found again even without header B.
 */
struct remap_device *
open_device (const struct remap_load_result *lr)
{
  const struct remap_geometry *g = &lr->header.geo;
  struct remap_options opt;
  uint64_t disk_size;

  remap_options_init (&opt);
  opt.internal = target.internal;
  opt.sector_size = g->sector_size;
  opt.spare_bytes = (uint64_t) g->spare_count * g->sector_size;
  opt.readonly = false;
  opt.store_name = target_name ();
  if (target.internal)
    disk_size = target.store_size;
  else if (target.have_disk)
    disk_size = target.disk.size;
  else
    disk_size = g->disk_size;
  return remap_device_open (&opt, target.store, target.store_size,
                            disk_size);
}

/* Everything a modifying subcommand does first: open for writing,
 * load, refuse unusable metadata, take the in-use lock, open the
 * device.  Returns 0 or an exit status.
 */
int
begin_change (enum need need, struct remap_device **devp)
{
  struct remap_load_result lr;
  int r;

  *devp = NULL;
  if ((r = load_valid (need, &lr)) != EXIT_OK)
    return r;
  *devp = open_device (&lr);
  free (lr.entries);
  if (*devp == NULL)
    return EXIT_ERROR;
  return EXIT_OK;
}

int
finish_change (struct remap_device *dev, int status)
{
  int err;

  if (remap_device_sync (dev, &err) == -1) {
    error_msg ("writing the remap table of %s failed: %s", target_name (),
               strerror (err));
    status = EXIT_ERROR;
  }
  remap_device_free (dev);
  return status;
}

/* ---- Sector lists. ---- */

int
parse_sector_args (int argc, char **argv, struct remap_ranges *ranges)
{
  char why[512];

  if (argc == 0) {
    error_msg ("no sectors given (give sectors or ranges, like 5 7-9 "
               "12,14)");
    return EXIT_ERROR;
  }
  for (int i = 0; i < argc; i++) {
    if (remap_ranges_parse_list (argv[i], ranges, why, sizeof why) == -1) {
      error_msg ("%s: %s (give sectors or ranges, like 5 7-9 12,14)",
                 argv[i], why);
      return EXIT_ERROR;
    }
  }
  return EXIT_OK;
}

int
check_ranges (const struct remap_device *dev,
              const struct remap_ranges *ranges)
{
  for (size_t i = 0; i < ranges->len; i++)
    if (ranges->v[i].last >= dev->geo.data_sectors) {
      error_msg ("sector %" PRIu64 " is past the end of the export (it "
                 "has %" PRIu64 " sectors of %" PRIu32 " bytes, 0 to %"
                 PRIu64 ")", ranges->v[i].last, dev->geo.data_sectors,
                 dev->geo.sector_size, dev->geo.data_sectors - 1);
      return EXIT_ERROR;
    }
  return EXIT_OK;
}

