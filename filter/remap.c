/* nbdkit-remap: the nbdkit glue.  Parameters, the filter callbacks,
 * and the life of the shared plugin context that the sync thread
 * writes the metadata through.  Everything else is in the core.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "control.h"
#include "device.h"
#include "ranges.h"
#include "filestore.h"

static_assert (REMAP_FLAG_FUA == NBDKIT_FLAG_FUA, "FUA flag value");
static_assert (REMAP_FLAG_MAY_TRIM == NBDKIT_FLAG_MAY_TRIM, "flag value");
static_assert (REMAP_FLAG_FAST_ZERO == NBDKIT_FLAG_FAST_ZERO, "flag value");

/* Parameters. */
static char *spare_path;               /* remap-spare */
static struct remap_options options;
static struct remap_ranges add_ranges; /* remap-add, remap-add-file */
static struct remap_ranges ddrescue_bytes; /* remap-ddrescue, in bytes */
static char *ddrescue_path;
static char *control_path;             /* remap-control */
static char *metrics_path;             /* remap-metrics-file */

/* Server-wide state, from .after_fork to .cleanup. */
static nbdkit_next *shared_next;
static struct remap_io shared_origin;  /* the plugin, outside connections */
static struct remap_file sparefile = { .fd = -1 };
static struct remap_device *device;

/* Per connection: the plugin as a struct remap_io. */
struct remap_handle {
  struct remap_io origin;
};

static void
remap_load (void)
{
  remap_options_init (&options);
}

static void
remap_unload (void)
{
  remap_device_free (device);
  remap_ranges_free (&add_ranges);
  remap_ranges_free (&ddrescue_bytes);
  free (ddrescue_path);
  free (spare_path);
  free (control_path);
  free (metrics_path);
}

/* remap-warn=75%,90%: ascending percentages, or "none". */
static int
parse_warn (const char *value)
{
  CLEANUP_FREE char *copy = strdup (value);
  char *item, *save = NULL;

  if (copy == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  options.nr_warn = 0;
  if (strcmp (value, "none") == 0)
    return 0;
  for (item = strtok_r (copy, ",", &save); item;
       item = strtok_r (NULL, ",", &save)) {
    uint32_t *slot = &options.warn_x100[options.nr_warn];
    if (options.nr_warn >= REMAP_MAX_WARN ||
        remap_parse_percent (item, slot, 10000) == -1 ||
        (options.nr_warn > 0 && *slot <= slot[-1])) {
      nbdkit_error ("remap-warn=%s: give up to %d ascending percentages "
                    "of the spare pool, like 75%%,90%%, or none",
                    value, REMAP_MAX_WARN);
      return -1;
    }
    options.nr_warn++;
  }
  if (options.nr_warn == 0) {
    nbdkit_error ("remap-warn=%s: no percentage given (use none to turn "
                  "the warnings off)", value);
    return -1;
  }
  return 0;
}

/* A file name parameter, made absolute (nbdkit changes directory when
 * it forks).
 */
static int
config_path (const char *key, const char *value, char **path)
{
  free (*path);
  *path = NULL;
  if (*value == '\0') {
    nbdkit_error ("%s: the file name is empty", key);
    return -1;
  }
  *path = nbdkit_absolute_path (value);
  return *path ? 0 : -1;
}

static int
parse_add_file (const char *value)
{
  CLEANUP_FREE char *path = NULL;
  FILE *fp;
  char why[512];
  int r;

  if (config_path ("remap-add-file", value, &path) == -1)
    return -1;
  fp = fopen (path, "r");
  if (fp == NULL) {
    nbdkit_error ("remap-add-file: cannot open %s: %m", path);
    return -1;
  }
  r = remap_ranges_parse_file (fp, &add_ranges, why, sizeof why);
  fclose (fp);
  if (r == -1)
    nbdkit_error ("remap-add-file: %s: %s", path, why);
  return r;
}

static int
parse_u32_param (const char *key, const char *value, uint32_t *out)
{
  return nbdkit_parse_uint32_t (key, value, out);
}

/* nbdkit's parsers say what is wrong but not with which parameter. */
static int
parse_size_param (const char *key, const char *value, int64_t *out)
{
  *out = nbdkit_parse_size (value);
  if (*out == -1) {
    nbdkit_error ("%s=%s: not a size (like 4096, 64k or 1M)", key, value);
    return -1;
  }
  return 0;
}

static int
parse_bool_param (const char *key, const char *value, bool *out)
{
  int r = nbdkit_parse_bool (value);

  if (r == -1) {
    nbdkit_error ("%s=%s: use yes or no", key, value);
    return -1;
  }
  *out = r;
  return 0;
}

static int
remap_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
              const char *key, const char *value)
{
  if (strcmp (key, "remap-spare") == 0)
    return config_path (key, value, &spare_path);
  if (strcmp (key, "remap-spare-size") == 0) {
    options.spare_bytes = 0;
    options.spare_percent_x100 = 0;
    if (strchr (value, '%')) {
      if (remap_parse_percent (value, &options.spare_percent_x100,
                               5000) == -1) {
        nbdkit_error ("remap-spare-size=%s: a percentage must be more than "
                      "0%% and at most 50%% of the disk, with at most two "
                      "decimals (like 1%% or 0.25%%)", value);
        return -1;
      }
      return 0;
    }
    int64_t r;
    if (parse_size_param (key, value, &r) == -1)
      return -1;
    if (r == 0) {
      nbdkit_error ("remap-spare-size=%s: the spare area cannot be empty",
                    value);
      return -1;
    }
    options.spare_bytes = r;
    return 0;
  }
  if (strcmp (key, "remap-sector-size") == 0) {
    int64_t r;
    if (parse_size_param (key, value, &r) == -1)
      return -1;
    if (r < REMAP_MIN_SECTOR_SIZE || r > REMAP_MAX_SECTOR_SIZE ||
        (r & (r - 1)) != 0) {
      nbdkit_error ("remap-sector-size=%s: must be a power of two from %d "
                    "to %d bytes", value, REMAP_MIN_SECTOR_SIZE,
                    REMAP_MAX_SECTOR_SIZE);
      return -1;
    }
    options.sector_size = r;
    return 0;
  }
  if (strcmp (key, "remap-format") == 0)
    return parse_bool_param (key, value, &options.format);
  if (strcmp (key, "remap-read-retries") == 0) {
    if (parse_u32_param (key, value, &options.read_retries) == -1)
      return -1;
    if (options.read_retries > 100) {
      nbdkit_error ("remap-read-retries=%s: at most 100", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "remap-verify") == 0)
    return parse_bool_param (key, value, &options.verify);
  if (strcmp (key, "remap-pending-partial") == 0) {
    if (strcmp (value, "zero") == 0)
      options.pending_partial_zero = true;
    else if (strcmp (value, "fail") == 0)
      options.pending_partial_zero = false;
    else {
      nbdkit_error ("remap-pending-partial=%s: use fail or zero", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "remap-warn") == 0)
    return parse_warn (value);
  if (strcmp (key, "remap-storm-limit") == 0)
    return parse_u32_param (key, value, &options.storm_limit);
  if (strcmp (key, "remap-add") == 0) {
    char why[512];
    if (remap_ranges_parse_list (value, &add_ranges, why, sizeof why) == -1) {
      nbdkit_error ("remap-add=%s: %s (give sectors like 5,7-9)", value, why);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "remap-add-file") == 0)
    return parse_add_file (value);
  if (strcmp (key, "remap-control") == 0)
    return config_path (key, value, &control_path);
  if (strcmp (key, "remap-metrics-file") == 0)
    return config_path (key, value, &metrics_path);
  if (strcmp (key, "remap-ddrescue") == 0)
    return config_path (key, value, &ddrescue_path);
  if (strncmp (key, "remap-", 6) == 0) {
    nbdkit_error ("unknown parameter %s; see nbdkit-remap-filter(1) for the "
                  "remap- parameters", key);
    return -1;
  }
  return next (nxdata, key, value);
}

static int
remap_config_complete (nbdkit_next_config_complete *next,
                       nbdkit_backend *nxdata)
{
  options.internal = spare_path == NULL;
  options.store_name = spare_path ? spare_path : "the disk";
  /* Read the mapfile now, so that a bad one stops the server before
   * it forks, with the message on the terminal.  Its areas are kept in
   * bytes until the sector size is known.
   */
  if (ddrescue_path) {
    FILE *fp = fopen (ddrescue_path, "r");
    char why[512];
    int r;
    if (fp == NULL) {
      nbdkit_error ("remap-ddrescue: cannot open %s: %m", ddrescue_path);
      return -1;
    }
    r = remap_ddrescue_parse (fp, 1, &ddrescue_bytes, why, sizeof why);
    fclose (fp);
    if (r == -1) {
      nbdkit_error ("remap-ddrescue: %s: %s", ddrescue_path, why);
      return -1;
    }
  }
  return next (nxdata);
}

#define remap_config_help \
  "remap-spare=FILE          Keep spares and table in FILE (default: on disk).\n" \
  "remap-spare-size=SIZE|N%  Size of the spare area (default 1%).\n" \
  "remap-sector-size=N       Remapping unit, 512..65536 (default 4096).\n" \
  "remap-format=yes          Format the spare area, discarding what is there.\n" \
  "remap-read-retries=N      Extra tries of a sector that fails to read (3).\n" \
  "remap-verify=yes          Read back every write; remap what differs.\n" \
  "remap-pending-partial=fail|zero  Partial writes to unreadable sectors.\n" \
  "remap-warn=75%,90%        Spare-pool use that logs a warning.\n" \
  "remap-storm-limit=N       New bad sectors per minute that log an alarm.\n" \
  "remap-add=S[,S-S...]      Remap these sectors at startup.\n" \
  "remap-add-file=FILE       Remap the sectors listed in FILE at startup.\n" \
  "remap-ddrescue=MAPFILE    Mark the bad areas of a ddrescue mapfile pending.\n" \
  "remap-control=SOCKET      Serve the live control protocol on SOCKET.\n" \
  "remap-metrics-file=FILE   Keep Prometheus metrics in FILE."

/* The control socket is bound and the metrics file tried before
 * nbdkit forks, so that a bad path stops the server with the message
 * on the terminal, before anything is written to the disk.
 */
static int
remap_get_ready (int thread_model)
{
  (void) thread_model;
  if (metrics_path && remap_metrics_check (metrics_path) == -1)
    return -1;
  if (control_path)
    return remap_control_listen (control_path);
  return 0;
}

/* struct remap_io over an nbdkit_next. */
static int
next_pread (void *opaque, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  nbdkit_next *next = opaque;
  return next->pread (next, buf, count, offset, flags, err);
}

static int
next_pwrite (void *opaque, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  nbdkit_next *next = opaque;
  return next->pwrite (next, buf, count, offset, flags, err);
}

static int
next_zero (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
           int *err)
{
  nbdkit_next *next = opaque;
  return next->zero (next, count, offset, flags, err);
}

static int
next_trim (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
           int *err)
{
  nbdkit_next *next = opaque;
  return next->trim (next, count, offset, flags, err);
}

static int
next_cache (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
            int *err)
{
  nbdkit_next *next = opaque;
  return next->cache (next, count, offset, flags, err);
}

static int
next_flush (void *opaque, int *err)
{
  nbdkit_next *next = opaque;
  return next->flush (next, 0, err);
}

static int
next_extent (void *opaque, uint32_t count, uint64_t offset, uint64_t *run,
             bool *zero, int *err)
{
  nbdkit_next *next = opaque;
  struct nbdkit_extents *exts = nbdkit_extents_new (offset, offset + count);
  struct nbdkit_extent e;

  if (exts == NULL) {
    *err = errno;
    return -1;
  }
  if (next->extents (next, count, offset, NBDKIT_FLAG_REQ_ONE, exts,
                     err) == -1) {
    nbdkit_extents_free (exts);
    return -1;
  }
  e = nbdkit_get_extent (exts, 0);
  *run = e.offset + e.length - offset;
  *zero = (e.type & NBDKIT_EXTENT_ZERO) != 0;
  nbdkit_extents_free (exts);
  return 0;
}

/* Asks the plugin what it can do, once, and leaves out of the
 * struct remap_io what it cannot (the server asserts that a filter
 * never calls what it was not offered).
 */
static int
origin_from_next (nbdkit_next *next, struct remap_io *io)
{
  int can_zero, can_trim, can_cache, can_flush, can_fua, can_extents;

  if ((can_zero = next->can_zero (next)) == -1 ||
      (can_trim = next->can_trim (next)) == -1 ||
      (can_cache = next->can_cache (next)) == -1 ||
      (can_flush = next->can_flush (next)) == -1 ||
      (can_fua = next->can_fua (next)) == -1 ||
      (can_extents = next->can_extents (next)) == -1)
    return -1;
  *io = (struct remap_io) {
    .opaque = next,
    .pread = next_pread,
    .pwrite = next_pwrite,
    .zero = can_zero == NBDKIT_ZERO_NATIVE ? next_zero : NULL,
    .trim = can_trim ? next_trim : NULL,
    .cache = can_cache != NBDKIT_CACHE_NONE ? next_cache : NULL,
    .flush = can_flush ? next_flush : NULL,
    .extent = can_extents ? next_extent : NULL,
    .can_fua = can_fua != NBDKIT_FUA_NONE,
  };
  return 0;
}

static void
close_shared_next (void)
{
  if (shared_next) {
    shared_next->finalize (shared_next);
    nbdkit_next_context_close (shared_next);
    shared_next = NULL;
  }
}

/* remap-add, remap-add-file and remap-ddrescue, done before any client
 * connects and made durable in one metadata write.
 */
/* A sector past the end of the disk at the smallest sector size is
 * refused before the disk is opened, so that a typo formats nothing;
 * the exact check against the export follows in apply_requests.
 */
static int
check_add_ranges_fit (uint64_t disk_size)
{
  uint32_t ss = options.sector_size ? options.sector_size
    : REMAP_MIN_SECTOR_SIZE;

  for (size_t i = 0; i < add_ranges.len; i++)
    if (add_ranges.v[i].last >= disk_size / ss) {
      nbdkit_error ("remap-add: sector %" PRIu64 " is past the end of the "
                    "disk (%" PRIu64 " bytes) at any sector size",
                    add_ranges.v[i].last, disk_size);
      return -1;
    }
  return 0;
}

static int
apply_requests (struct remap_device *dev)
{
  const uint64_t sectors = dev->geo.data_sectors;
  const uint32_t ss = dev->geo.sector_size;
  int err;

  if (add_ranges.len == 0 && ddrescue_bytes.len == 0)
    return 0;
  if (options.readonly) {
    nbdkit_error ("remap-add and remap-ddrescue need a writable disk");
    return -1;
  }
  for (size_t i = 0; i < add_ranges.len; i++) {
    const struct remap_range *r = &add_ranges.v[i];
    if (r->last >= sectors) {
      nbdkit_error ("remap-add: sector %" PRIu64 " is past the end of the "
                    "disk (it has %" PRIu64 " sectors of %" PRIu32 " bytes)",
                    r->last, sectors, ss);
      return -1;
    }
    if (remap_device_add (dev, &shared_origin, r->first, r->last,
                          &err) == -1) {
      nbdkit_error ("remap-add: remapping sectors %" PRIu64 "-%" PRIu64
                    " failed: %s", r->first, r->last, strerror (err));
      return -1;
    }
  }
  for (size_t i = 0; i < ddrescue_bytes.len; i++) {
    uint64_t marked;
    int r = remap_device_mark_pending_bytes (dev, ddrescue_bytes.v[i].first,
                                             ddrescue_bytes.v[i].last,
                                             &marked, &err);
    if (r == -1) {
      nbdkit_error ("remap-ddrescue: %s", strerror (err));
      return -1;
    }
    if (r == 1)
      nbdkit_debug ("remap-ddrescue: area at byte %" PRIu64 " is past the "
                    "end of the export, ignored", ddrescue_bytes.v[i].first);
  }
  if (remap_device_sync (dev, &err) == -1) {
    nbdkit_error ("remap: saving the table after remap-add/remap-ddrescue "
                  "failed: %s", strerror (err));
    return -1;
  }
  return 0;
}

/* nbdkit has no "are we quitting?" call, but its sleep returns at
 * once with an error when the server is shutting down or the calling
 * thread's client has gone: a zero-length sleep asks exactly that.
 */
static bool
quitting (void)
{
  return nbdkit_nanosleep (0, 0) == -1;
}

/* Whether nbdkit was started with -r.  A filter is not told, and the
 * plugin below still says it can write, so read our own command line:
 * the options come before the plugin name.
 */
static bool
server_is_readonly (void)
{
  char buf[8192], *p, *end;
  FILE *fp = fopen ("/proc/self/cmdline", "r");
  size_t n;
  bool ro = false;

  if (fp == NULL)
    return false;
  n = fread (buf, 1, sizeof buf - 1, fp);
  fclose (fp);
  buf[n] = '\0';
  end = buf + n;
  for (p = buf + strlen (buf) + 1; p < end; p += strlen (p) + 1) {
    if (strcmp (p, "-r") == 0 || strcmp (p, "--readonly") == 0 ||
        strcmp (p, "--read-only") == 0)
      ro = true;
    /* A cluster of flags that take no value, like -fr. */
    else if (p[0] == '-' && p[1] != '-' && p[1] &&
             strspn (p + 1, "fnrsv") == strlen (p + 1) && strchr (p, 'r'))
      ro = true;
  }
  return ro;
}

/* Loads (or formats) the metadata and starts the sync thread, before
 * any client can connect.
 */
static int
remap_after_fork (nbdkit_backend *backend)
{
  const struct remap_io *store;
  int64_t disk_size;
  uint64_t store_size;
  int can_write;

  options.readonly = server_is_readonly ();
  shared_next = nbdkit_next_context_open (backend, options.readonly, "", 1);
  if (shared_next == NULL) {
    nbdkit_error ("remap: cannot open the plugin outside a connection");
    return -1;
  }
  if (shared_next->prepare (shared_next) == -1 ||
      (disk_size = shared_next->get_size (shared_next)) == -1 ||
      (can_write = shared_next->can_write (shared_next)) == -1 ||
      origin_from_next (shared_next, &shared_origin) == -1)
    goto error;
  options.readonly = options.readonly || !can_write;

  if (options.internal) {
    store = &shared_origin;
    store_size = disk_size;
  }
  else {
    if (remap_file_open (&sparefile, "remap-spare", spare_path,
                         options.readonly ? 0
                         : REMAP_FILE_WRITE | REMAP_FILE_CREATE |
                           REMAP_FILE_TRUNCATE) == -1)
      goto error;
    store_size = sparefile.size;
    store = &sparefile.io;
  }

  if (check_add_ranges_fit (disk_size) == -1)
    goto error;
  device = remap_device_open (&options, store, store_size, disk_size);
  if (device)
    device->quit_check = quitting;
  if (device == NULL || apply_requests (device) == -1 ||
      remap_device_start (device) == -1 ||
      remap_control_start (device, &shared_origin, metrics_path) == -1)
    goto error;
  return 0;

 error:
  remap_control_stop ();
  remap_device_free (device);
  device = NULL;
  remap_file_close (&sparefile, spare_path, true);
  close_shared_next ();
  return -1;
}

/* Set the cancel flag, wake every sleeper, join, write the last
 * changes: nothing here waits for anything but I/O already under way.
 */
static void
remap_cleanup (nbdkit_backend *backend)
{
  (void) backend;
  if (device)
    remap_device_stop (device);
  remap_control_stop ();
  remap_file_close (&sparefile, spare_path, false);
  close_shared_next ();
}

static void *
remap_open (nbdkit_next_open *next, nbdkit_context *nxdata, int readonly,
            const char *exportname, int is_tls)
{
  struct remap_handle *h;

  (void) is_tls;
  if (next (nxdata, readonly, exportname) == -1)
    return NULL;
  h = calloc (1, sizeof *h);
  if (h == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  return h;
}

static void
remap_close (void *handle)
{
  free (handle);
}

static int
remap_prepare (nbdkit_next *next, void *handle, int readonly)
{
  struct remap_handle *h = handle;

  (void) readonly;
  if (device == NULL) {
    nbdkit_error ("remap: the remap table is not loaded");
    return -1;
  }
  /* The server checks every request against the size it was told. */
  if (next->get_size (next) == -1)
    return -1;
  return origin_from_next (next, &h->origin);
}

static int64_t
remap_get_size (nbdkit_next *next, void *handle)
{
  (void) next; (void) handle;
  return device->geo.export_size;
}

/* Flushing also makes new remaps durable, so it is always offered. */
static int
remap_can_flush (nbdkit_next *next, void *handle)
{
  (void) next; (void) handle;
  return 1;
}

static int
remap_can_fua (nbdkit_next *next, void *handle)
{
  struct remap_handle *h = handle;
  (void) next;
  return h->origin.can_fua ? NBDKIT_FUA_NATIVE : NBDKIT_FUA_EMULATE;
}

/* Without a native zero below, let nbdkit turn zeroing into writes,
 * which our pwrite remaps like any other.
 */
static int
remap_can_zero (nbdkit_next *next, void *handle)
{
  struct remap_handle *h = handle;
  (void) next;
  return h->origin.zero ? NBDKIT_ZERO_NATIVE : NBDKIT_ZERO_EMULATE;
}

static int
remap_can_fast_zero (nbdkit_next *next, void *handle)
{
  struct remap_handle *h = handle;
  return h->origin.zero ? next->can_fast_zero (next) : 0;
}

static int
remap_pread (nbdkit_next *next, void *handle, void *buf, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  struct remap_handle *h = handle;
  (void) next;
  return remap_device_pread (device, &h->origin, buf, count, offset, flags,
                             err);
}

static int
remap_pwrite (nbdkit_next *next, void *handle, const void *buf,
              uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct remap_handle *h = handle;
  (void) next;
  return remap_device_pwrite (device, &h->origin, buf, count, offset, flags,
                              err);
}

static int
remap_zero (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  struct remap_handle *h = handle;
  (void) next;
  return remap_device_zero (device, &h->origin, count, offset, flags, err);
}

static int
remap_trim (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  struct remap_handle *h = handle;
  (void) next;
  return remap_device_trim (device, &h->origin, count, offset, flags, err);
}

static int
remap_cache (nbdkit_next *next, void *handle, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  struct remap_handle *h = handle;
  (void) next;
  return remap_device_cache (device, &h->origin, count, offset, flags, err);
}

static int
remap_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  struct remap_handle *h = handle;
  (void) next; (void) flags;
  return remap_device_flush (device, &h->origin, err);
}

/* Extents: the plugin's answer, except that remapped sectors are
 * allocated data wherever the plugin thinks they are.
 */
struct extents_request {
  nbdkit_next *next;
  uint32_t flags;
  struct nbdkit_extents *extents;
};

static int
extents_span (void *vp, uint64_t offset, uint32_t len,
              const struct remap_entry *entry, int *err)
{
  struct extents_request *rq = vp;
  struct nbdkit_extents *plugin;
  size_t i, n;

  if (entry && entry->state == REMAP_STATE_REMAPPED) {
    if (nbdkit_add_extent (rq->extents, offset, len, 0) == -1) {
      *err = errno;
      return -1;
    }
    return rq->flags & NBDKIT_FLAG_REQ_ONE ? 1 : 0;
  }
  plugin = nbdkit_extents_full (rq->next, len, offset, rq->flags, err);
  if (plugin == NULL)
    return -1;
  n = nbdkit_extents_count (plugin);
  for (i = 0; i < n; i++) {
    struct nbdkit_extent e = nbdkit_get_extent (plugin, i);
    if (nbdkit_add_extent (rq->extents, e.offset, e.length, e.type) == -1) {
      *err = errno;
      nbdkit_extents_free (plugin);
      return -1;
    }
  }
  nbdkit_extents_free (plugin);
  return rq->flags & NBDKIT_FLAG_REQ_ONE ? 1 : 0;
}

static int
remap_extents (nbdkit_next *next, void *handle, uint32_t count,
               uint64_t offset, uint32_t flags,
               struct nbdkit_extents *extents, int *err)
{
  struct extents_request rq = { .next = next, .flags = flags,
                                .extents = extents };
  int r;

  (void) handle;
  if (!remap_table_may_touch (device->table,
                              offset / device->geo.sector_size,
                              (offset + count - 1) / device->geo.sector_size))
    return next->extents (next, count, offset, flags, extents, err);
  r = remap_device_walk (device, count, offset, extents_span, &rq, err);
  return r == -1 ? -1 : 0;
}

static struct nbdkit_filter filter = {
  .name              = "remap",
  .longname          = "nbdkit bad-sector remapping filter",
  .load              = remap_load,
  .unload            = remap_unload,
  .config            = remap_config,
  .config_complete   = remap_config_complete,
  .config_help       = remap_config_help,
  .get_ready         = remap_get_ready,
  .after_fork        = remap_after_fork,
  .cleanup           = remap_cleanup,
  .open              = remap_open,
  .close             = remap_close,
  .prepare           = remap_prepare,
  .get_size          = remap_get_size,
  .can_flush         = remap_can_flush,
  .can_fua           = remap_can_fua,
  .can_zero          = remap_can_zero,
  .can_fast_zero     = remap_can_fast_zero,
  .pread             = remap_pread,
  .pwrite            = remap_pwrite,
  .zero              = remap_zero,
  .trim              = remap_trim,
  .cache             = remap_cache,
  .flush             = remap_flush,
  .extents           = remap_extents,
};

NBDKIT_REGISTER_FILTER (filter)
