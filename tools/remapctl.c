/* remapctl: inspect, check, repair and edit the metadata of
 * nbdkit-remap-filter while no server is using it.
 *
 * Everything about the on-disk format goes through the core library
 * (filter/libremapcore.la): remap_metadata_load finds and checks the
 * copies, remap_metadata_write rewrites them, and remap_device_open
 * plus remap_device_add/mark_pending/unmap/sync make the same changes
 * the filter makes.  This file only supplies the I/O (a file, a block
 * device or an NBD export through libnbd), the locking, the command
 * line and the output.
 *
 * Exit status: 0 success; 1 (check) a copy needs repair; 2 the
 * metadata is damaged (no usable copy); 3 any other error, including
 * "in use by a running nbdkit".  See man/remapctl.pod.
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
#include <nbdkit-filter.h>

#include "device.h"
#include "filestore.h"
#include "format.h"
#include "io.h"
#include "lock.h"
#include "metadata.h"
#include "ranges.h"
#include "report.h"
#include "spares.h"
#include "sync.h"
#include "table.h"

#define EXIT_OK 0
#define EXIT_REPAIR 1           /* check: one copy bad or stale */
#define EXIT_DAMAGED 2          /* no usable copy */
#define EXIT_ERROR 3            /* anything else */

/* ---- Options. ---- */

static int verbose;
static const char *disk_path;
static const char *spare_path;
static const char *nbd_uri;
static uint32_t sector_size_opt;        /* 0: not given */
static uint64_t spare_bytes_opt;        /* --spare-size=SIZE */
static uint32_t spare_pct_x100_opt;     /* --spare-size=N% */
static bool force_opt;
static bool json_opt;

/* ---- Messages. ---- */

static void error_msg (const char *fs, ...)
  __attribute__ ((format (printf, 1, 2)));

static void
error_msg (const char *fs, ...)
{
  va_list args;

  fputs ("remapctl: ", stderr);
  va_start (args, fs);
  vfprintf (stderr, fs, args);
  va_end (args);
  fputc ('\n', stderr);
}

/* The core reports through these two, which nbdkit normally supplies.
 * Its messages start "remap: "; we print ours with our own name.
 */
static void
core_message (const char *prefix, const char *fs, va_list args)
{
  char buf[4096];
  const char *p = buf;

  vsnprintf (buf, sizeof buf, fs, args);
  if (strncmp (p, "remap: ", 7) == 0)
    p += 7;
  fprintf (stderr, "remapctl: %s%s\n", prefix, p);
}

void
nbdkit_error (const char *fs, ...)
{
  va_list args;
  int saved_errno = errno;      /* for %m */

  va_start (args, fs);
  errno = saved_errno;
  core_message ("", fs, args);
  va_end (args);
  errno = saved_errno;
}

void
nbdkit_debug (const char *fs, ...)
{
  va_list args;
  int saved_errno = errno;

  if (!verbose)
    return;
  va_start (args, fs);
  errno = saved_errno;
  core_message ("debug: ", fs, args);
  va_end (args);
  errno = saved_errno;
}

static void
in_use_msg (const char *what, const char *lock)
{
  error_msg ("%s is in use by a running nbdkit (lock %s held); "
             "stop the server first", what, lock);
}

/* ---- Endpoints: a file, a block device, or an NBD export. ---- */

enum access { ACCESS_READ, ACCESS_WRITE, ACCESS_CREATE };

struct endpoint {
  const char *name;             /* path or URI, for messages */
  bool open;
  struct remap_file file;       /* file or device; fd -1 otherwise */
  struct nbd_handle *nbd;       /* NBD export, else NULL */
  bool nbd_extents;             /* base:allocation negotiated */
  uint64_t size;
  struct remap_io io;
};

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
static int
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

static int
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

static void
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

struct target {
  bool internal;
  bool have_disk;
  struct endpoint disk;         /* the data disk (and store if internal) */
  struct endpoint spare;        /* external mode */
  const struct remap_io *store;
  uint64_t store_size;
  const char *store_name;       /* for messages */
  const struct remap_io *origin; /* the data disk, if open */
  int lock_fd;                  /* in-use lock we hold, or -1 */
  char lock_path[256];
};

static struct target target = { .lock_fd = -1 };

/* What a subcommand needs. */
enum need {
  NEED_READ,                    /* reads the store only */
  NEED_WRITE_STORE,             /* writes the store; data disk optional */
  NEED_WRITE_BOTH,              /* writes the store and the data disk */
  NEED_FORMAT,                  /* creates the store; needs the disk size */
};

static int
open_disk (enum access acc)
{
  if (nbd_uri)
    return open_nbd (&target.disk, nbd_uri, acc);
  return open_file (&target.disk, disk_path, acc, false);
}

static int
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

static void
close_target (bool remove_created)
{
  if (target.lock_fd >= 0) {
    remap_lock_release (target.lock_fd);
    target.lock_fd = -1;
  }
  close_endpoint (&target.spare, remove_created);
  close_endpoint (&target.disk, false);
}

/* The name users know the table by: the image in internal mode, the
 * spare file in external mode.
 */
static const char *
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
static int
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

static const char *
copy_name (int i)
{
  return i == 0 ? "A" : "B";
}

static bool
copy_current (const struct remap_load_result *lr, int i)
{
  return lr->copy[i].status == REMAP_DECODE_OK &&
    lr->copy[i].generation == lr->header.generation;
}

/* One line per copy, in words. */
static void
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

static void
uuid_hex (const uint8_t uuid[16], char out[33])
{
  for (int i = 0; i < 16; i++)
    snprintf (out + 2*i, 3, "%02x", uuid[i]);
}

/* Requires usable metadata; explains why not.  Returns 0 or an exit
 * status.
 */
static int
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

/* Takes the in-use lock of the table exclusively (every running filter
 * on this host holds it), and keeps it if keep.  Returns 0 or an exit
 * status.
 */
static int
lock_table (const uint8_t uuid[16], bool keep)
{
  int fd = remap_lock_acquire (uuid, true, target.lock_path,
                               sizeof target.lock_path);

  if (fd == -1) {
    if (errno == EWOULDBLOCK)
      in_use_msg (target_name (), target.lock_path);
    else
      error_msg ("cannot create the lock file %s: %m", target.lock_path);
    return EXIT_ERROR;
  }
  if (keep)
    target.lock_fd = fd;
  else
    remap_lock_release (fd);
  return EXIT_OK;
}

/* For the read-only subcommands: take the lock shared for an instant,
 * only to warn that what is on disk may lag behind a running server.
 * Nothing is held, so a server starting now is not in our way.
 */
static void
warn_if_in_use (const uint8_t uuid[16])
{
  char path[256];
  int fd = remap_lock_acquire (uuid, false, path, sizeof path);

  if (fd >= 0) {
    remap_lock_release (fd);
    return;
  }
  if (errno == EWOULDBLOCK)
    error_msg ("warning: %s is in use by a running nbdkit (lock %s held): "
               "this is the metadata last written to disk, which may lag "
               "behind the server (its remap-control socket reports the "
               "live state)", target_name (), path);
}

/* In external mode with a data disk given, warn if it is not the disk
 * the spare file was formatted for.
 */
static void
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
static struct remap_device *
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
static struct remap_device *
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
static int
begin_change (enum need need, struct remap_device **devp)
{
  struct remap_load_result lr;
  int r;

  *devp = NULL;
  if ((r = open_target (need)) != EXIT_OK)
    return r;
  if ((r = load_metadata (&lr)) != EXIT_OK)
    return r;
  if ((r = require_valid (&lr)) != EXIT_OK) {
    free (lr.entries);
    return r;
  }
  /* remap_device_open takes the lock itself; a second exclusive flock
   * from this process would conflict with it, so only test it here.
   */
  if ((r = lock_table (lr.header.geo.uuid, false)) != EXIT_OK) {
    free (lr.entries);
    return r;
  }
  *devp = open_device (&lr);
  free (lr.entries);
  if (*devp == NULL)
    return EXIT_ERROR;
  return EXIT_OK;
}

static int
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

static int
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

static int
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

/* ---- Subcommands. ---- */

struct subcommand {
  const char *name;
  const char *args;             /* for the usage line */
  const char *summary;
  const char *help;             /* details for SUBCOMMAND --help */
  int (*run) (int argc, char **argv);
  int min_args, max_args;       /* -1: no limit */
  bool takes_force, takes_json;
};

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

  if ((r = open_target (NEED_READ)) != EXIT_OK)
    return r;
  if ((r = load_metadata (&lr)) != EXIT_OK)
    return r;
  if ((r = require_valid (&lr)) != EXIT_OK) {
    free (lr.entries);
    return r;
  }
  warn_if_in_use (lr.header.geo.uuid);
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

static int
cmd_show (int argc, char **argv)
{
  (void) argc; (void) argv;
  return report (json_opt);
}

static int
cmd_dump (int argc, char **argv)
{
  (void) argc; (void) argv;
  return report (true);
}

static int
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
  warn_if_in_use (lr.header.geo.uuid);
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

static int
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
  if ((r = lock_table (lr.header.geo.uuid, true)) != EXIT_OK) {
    free (lr.entries);
    return r;
  }
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

static int
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
    /* No server may be using the table we are about to replace.  Only
     * a test: remap_device_open checks it again, and would see our
     * own lock as someone else's.
     */
    if ((r = lock_table (lr.header.geo.uuid, false)) != EXIT_OK)
      goto out;
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

static int
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

static int
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

static int
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

static int
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

static int
cmd_export_ddrescue (int argc, char **argv)
{
  struct remap_load_result lr;
  const struct remap_geometry *g;
  uint64_t pos = 0;
  int r;

  (void) argc; (void) argv;
  if ((r = open_target (NEED_READ)) != EXIT_OK)
    return r;
  if ((r = load_metadata (&lr)) != EXIT_OK)
    return r;
  if ((r = require_valid (&lr)) != EXIT_OK) {
    free (lr.entries);
    return r;
  }
  warn_if_in_use (lr.header.geo.uuid);
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

static const struct subcommand subcommands[] = {
  { "show", "", "print the geometry, copies, spares, counters and entries",
    "Prints the geometry, the mode, the generation, the state of each\n"
    "metadata copy, the spares (used, free, retired), the pending\n"
    "sectors, the counters and every table entry.  With --json, the\n"
    "same as 'dump'.\n",
    cmd_show, 0, 0, false, true },
  { "dump", "[--json]", "print the same as JSON",
    "Prints one JSON object: the store, its identity, each copy, and\n"
    "the \"status\" and \"list\" replies of the filter's control socket.\n",
    cmd_dump, 0, 0, false, true },
  { "check", "", "check both metadata copies (exit 0, 1 or 2)",
    "Reads both metadata copies and says which are valid.  Exit status:\n"
    "0 healthy (both valid, same generation), 1 repair needed (one copy\n"
    "bad or stale), 2 damaged (no usable copy), 3 other error.\n",
    cmd_check, 0, 0, false, false },
  { "repair", "", "rewrite bad or stale copies from the newest valid one",
    "Rewrites every copy from the newest valid one, with the same\n"
    "entries.  Refuses (exit 2) if no copy is valid.\n",
    cmd_repair, 0, 0, false, false },
  { "format", "[--force] [--spare-size=SIZE|N%]", "create an empty table",
    "Lays out and writes an empty table.  Refuses to overwrite existing\n"
    "metadata or an area holding data unless --force is given.  In\n"
    "external mode the data disk (--disk or --uri) gives the size.\n"
    "  --spare-size=SIZE|N%  spare area (default 1% of the disk, at\n"
    "                        least 64 sectors); SIZE may end in K, M, G, T\n"
    "  --sector-size=N       remapping unit (default 4096)\n"
    "  -f, --force           destroy what is there\n",
    cmd_format, 0, 0, true, false },
  { "add", "SECTOR...", "remap sectors now, copying their data to spares",
    "Moves each sector to a spare, copying its current data.  A sector\n"
    "that cannot be read is marked pending instead (with a warning).\n"
    "Sectors are numbers or ranges (5 7-9 12,14) in units of the sector\n"
    "size.  In external mode the data disk is needed too.\n",
    cmd_add, 1, -1, false, false },
  { "pending", "SECTOR...", "mark sectors pending (unreadable)",
    "Marks sectors pending: the filter fails reads of them until a write\n"
    "gives them new contents.  Remapped sectors are left alone.\n",
    cmd_pending, 1, -1, false, false },
  { "unmap", "SECTOR...", "move remapped sectors back to their place",
    "Copies each remapped sector back from its spare, reads it back,\n"
    "and only if it matches removes the entry and frees the spare.  A\n"
    "single sector must be remapped; a range stands for the remapped\n"
    "sectors in it.  In external mode the data disk is needed too.\n",
    cmd_unmap, 1, -1, false, false },
  { "import-ddrescue", "MAPFILE", "mark the bad areas of a mapfile pending",
    "Marks every sector touched by a bad ('-') area of a GNU ddrescue\n"
    "mapfile pending.  Areas past the end of the export are ignored.\n",
    cmd_import_ddrescue, 1, 1, false, false },
  { "export-ddrescue", "", "print the bad sectors as a ddrescue mapfile",
    "Prints a GNU ddrescue mapfile covering the export: the remapped\n"
    "and pending sectors are bad ('-'), everything else finished ('+').\n"
    "nbdkit-ddrescue-filter(1) accepts it.\n",
    cmd_export_ddrescue, 0, 0, false, false },
};
#define NR_SUBCOMMANDS (sizeof subcommands / sizeof subcommands[0])

/* ---- Command line. ---- */

static const char global_options_help[] =
  "Where the metadata is (one of):\n"
  "  -d, --disk=IMAGE      internal mode: the image or device whose end\n"
  "                        holds the remap region\n"
  "  -u, --uri=NBD-URI     the same over NBD, for a disk served by nbdkit\n"
  "                        without the remap filter\n"
  "  -s, --spare=FILE      external mode: the spare file (with --disk or\n"
  "                        --uri for the data disk where needed)\n"
  "Other options:\n"
  "      --sector-size=N   sector size used to find copy A when header B\n"
  "                        is lost (default 4096); for format, the unit\n"
  "      --spare-size=SIZE|N%  the same for the spare area size\n"
  "  -v, --verbose         print debugging messages\n"
  "  -h, --help            print this help (or a subcommand's)\n"
  "  -V, --version         print the version\n";

static void
usage (FILE *fp)
{
  fprintf (fp,
           "Usage: remapctl [OPTIONS] SUBCOMMAND [ARGS...]\n"
           "Inspects, checks, repairs and edits the metadata of\n"
           "nbdkit-remap-filter while no server uses it.\n\n%s\n"
           "Subcommands:\n", global_options_help);
  for (size_t i = 0; i < NR_SUBCOMMANDS; i++) {
    char left[64];
    snprintf (left, sizeof left, "%s %s", subcommands[i].name,
              subcommands[i].args);
    if (strlen (left) > 28)
      fprintf (fp, "  %s\n  %-28s %s\n", left, "", subcommands[i].summary);
    else
      fprintf (fp, "  %-28s %s\n", left, subcommands[i].summary);
  }
  fprintf (fp, "\nRun 'remapctl SUBCOMMAND --help' for details.\n"
           "Exit status: 0 success, 1 repair needed (check), 2 metadata "
           "damaged,\n3 any other error (including in use by a running "
           "nbdkit).\n"
           "See remapctl(1).\n");
}

static void
subcommand_usage (const struct subcommand *sc)
{
  printf ("Usage: remapctl [OPTIONS] %s %s\n\n%s\n%s", sc->name, sc->args,
          sc->help, global_options_help);
}

enum {
  OPT_SECTOR_SIZE = 256,
  OPT_SPARE_SIZE,
  OPT_JSON,
};

static const struct option long_options[] = {
  { "disk", required_argument, NULL, 'd' },
  { "spare", required_argument, NULL, 's' },
  { "uri", required_argument, NULL, 'u' },
  { "sector-size", required_argument, NULL, OPT_SECTOR_SIZE },
  { "spare-size", required_argument, NULL, OPT_SPARE_SIZE },
  { "force", no_argument, NULL, 'f' },
  { "json", no_argument, NULL, OPT_JSON },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { "version", no_argument, NULL, 'V' },
  { NULL, 0, NULL, 0 },
};

/* A size in bytes with an optional binary suffix: 64K, 1M, 2G. */
static int
parse_size (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno)
    return -1;
  switch (*end) {
  case '\0': break;
  case 'b': case 'B': end++; break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  case 'p': case 'P': shift = 50; end++; break;
  default: return -1;
  }
  if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
    return -1;
  *out = (uint64_t) v << shift;
  return 0;
}

/* Handles one option; returns 0, or an exit status for bad input, or
 * -1 for --help (the caller prints the right help).
 */
static int
handle_option (int c, const char *arg)
{
  uint64_t v;

  switch (c) {
  case 'd': disk_path = arg; return 0;
  case 's': spare_path = arg; return 0;
  case 'u': nbd_uri = arg; return 0;
  case 'f': force_opt = true; return 0;
  case 'v': verbose++; remap_debug_verbose = 1; return 0;
  case OPT_JSON: json_opt = true; return 0;
  case 'h': return -1;
  case 'V':
    printf ("remapctl (nbdkit-remap) %s\n", PACKAGE_VERSION);
    exit (EXIT_OK);
  case OPT_SECTOR_SIZE:
    if (parse_size (arg, &v) == -1 || v < REMAP_MIN_SECTOR_SIZE ||
        v > REMAP_MAX_SECTOR_SIZE || (v & (v - 1)) != 0) {
      error_msg ("--sector-size=%s: must be a power of two from %d to %d",
                 arg, REMAP_MIN_SECTOR_SIZE, REMAP_MAX_SECTOR_SIZE);
      return EXIT_ERROR;
    }
    sector_size_opt = v;
    return 0;
  case OPT_SPARE_SIZE:
    spare_bytes_opt = 0;
    spare_pct_x100_opt = 0;
    if (strchr (arg, '%')) {
      if (remap_parse_percent (arg, &spare_pct_x100_opt, 5000) == -1) {
        error_msg ("--spare-size=%s: a percentage must be more than 0%% "
                   "and at most 50%%, with at most two decimals (like 1%% "
                   "or 0.25%%)", arg);
        return EXIT_ERROR;
      }
    }
    else if (parse_size (arg, &spare_bytes_opt) == -1 ||
             spare_bytes_opt == 0) {
      error_msg ("--spare-size=%s: give a size in bytes (with an optional "
                 "K, M, G or T) or a percentage like 1%%", arg);
      return EXIT_ERROR;
    }
    return 0;
  default:
    error_msg ("try 'remapctl --help'");
    return EXIT_ERROR;
  }
}

int
main (int argc, char **argv)
{
  const struct subcommand *sc = NULL;
  int c, r, sub_argc;
  char **sub_argv;

  /* Options before the subcommand. */
  opterr = 1;
  while ((c = getopt_long (argc, argv, "+d:s:u:fvhV", long_options,
                           NULL)) != -1) {
    r = handle_option (c, optarg);
    if (r == -1) {
      usage (stdout);
      return EXIT_OK;
    }
    if (r != 0)
      return r;
  }
  if (optind >= argc) {
    error_msg ("no subcommand given");
    usage (stderr);
    return EXIT_ERROR;
  }
  for (size_t i = 0; i < NR_SUBCOMMANDS; i++)
    if (strcmp (argv[optind], subcommands[i].name) == 0)
      sc = &subcommands[i];
  if (sc == NULL) {
    error_msg ("unknown subcommand '%s'; try 'remapctl --help'",
               argv[optind]);
    return EXIT_ERROR;
  }

  /* The subcommand's options (the global ones are accepted here too)
   * and arguments.
   */
  sub_argc = argc - optind;
  sub_argv = argv + optind;
  optind = 0;                   /* start a fresh scan */
  while ((c = getopt_long (sub_argc, sub_argv, "d:s:u:fvhV", long_options,
                           NULL)) != -1) {
    r = handle_option (c, optarg);
    if (r == -1) {
      subcommand_usage (sc);
      return EXIT_OK;
    }
    if (r != 0)
      return r;
  }
  sub_argc -= optind;
  sub_argv += optind;

  if (force_opt && !sc->takes_force) {
    error_msg ("%s: --force is only for format", sc->name);
    return EXIT_ERROR;
  }
  if (json_opt && !sc->takes_json) {
    error_msg ("%s: --json is only for show and dump", sc->name);
    return EXIT_ERROR;
  }
  if (sub_argc < sc->min_args ||
      (sc->max_args >= 0 && sub_argc > sc->max_args)) {
    error_msg ("%s: %s; usage: remapctl [OPTIONS] %s %s", sc->name,
               sub_argc < sc->min_args ? "missing arguments"
               : "too many arguments", sc->name, sc->args);
    return EXIT_ERROR;
  }
  if (disk_path && nbd_uri) {
    error_msg ("give --disk or --uri, not both");
    return EXIT_ERROR;
  }
  if (!disk_path && !nbd_uri && !spare_path) {
    error_msg ("say where the metadata is: --disk=IMAGE, --uri=NBD-URI or "
               "--spare=FILE (see 'remapctl --help')");
    return EXIT_ERROR;
  }

  r = sc->run (sub_argc, sub_argv);
  close_target (false);
  if (fflush (stdout) == EOF) {
    error_msg ("writing to standard output: %m");
    if (r == EXIT_OK)
      r = EXIT_ERROR;
  }
  return r;
}
