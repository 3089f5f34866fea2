/* nbdkit-remap: the nbdkit glue.  The filter callbacks, and the life
 * of the shared plugin context that the sync thread writes the
 * metadata through.  Parameters are in params.c, the plugin as a
 * struct remap_io in nextio.c, everything else in the core.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "control.h"
#include "metricsfile.h"
#include "device.h"
#include "filestore.h"
#include "listeners.h"
#include "lock.h"
#include "nextio.h"
#include "params.h"
#include "storelock.h"

static_assert (REMAP_FLAG_FUA == NBDKIT_FLAG_FUA, "FUA flag value");
static_assert (REMAP_FLAG_MAY_TRIM == NBDKIT_FLAG_MAY_TRIM, "flag value");
static_assert (REMAP_FLAG_FAST_ZERO == NBDKIT_FLAG_FAST_ZERO, "flag value");

/* Server-wide state, from the first client's .preconnect to .cleanup. */
static nbdkit_next *shared_next;
static struct remap_next shared_rn;
static struct remap_io shared_origin;  /* the plugin, outside connections */
static struct remap_file sparefile = { .fd = -1 };
static struct remap_device *device;

/* Per connection: the plugin as a struct remap_io. */
struct remap_handle {
  struct remap_next rn;
  struct remap_io origin;
};

static void
remap_load (void)
{
  remap_params_init ();
}

/* Set when the filter refuses to start after nbdkit forked: no client
 * may then be left waiting (see refuse), and nbdkit must exit with a
 * failure, which nbdkit 1.32 lets a filter ask for only by exiting
 * itself, here, once everything else was cleaned up.
 */
static bool refused;

static void
remap_unload (void)
{
  remap_device_free (device);
  remap_store_lock_release ();
  remap_metrics_file_close ();
  remap_params_free ();
  if (refused)
    exit (EXIT_FAILURE);
}


/* A spare file can be read before nbdkit forks, unlike the plugin:
 * damaged metadata in it (also a file cut short, or a forged header)
 * is refused here, with the message on the terminal and before any
 * --run command starts.  The checks that need the disk wait for
 * after_fork.
 */
static int
check_spare_file (void)
{
  struct remap_file file = { .fd = -1 };
  struct remap_load_result lr;

  if (params.options.internal || params.options.format ||
      (access (params.spare_path, F_OK) == -1 && errno == ENOENT))
    return 0;
  /* As a spare file: a link or a file that another account could have
   * placed is refused before it is opened, and before the fork.
   */
  if (remap_file_open (&file, "remap-spare", params.spare_path,
                       REMAP_FILE_SPARE) == -1)
    return -1;
  remap_metadata_load (&file.io, file.size, false,
                       params.options.sector_size, 0, &lr);
  free (lr.entries);
  remap_file_close (&file, params.spare_path, false);
  if (lr.found == REMAP_FOUND_DAMAGED) {
    remap_device_report_damaged (&params.options, &lr);
    return -1;
  }
  return 0;
}

/* The plugin's thread model is applied to our own calls (nextio.c).
 * The store is locked, the spare file checked, the control socket
 * bound and the metrics file tried before nbdkit forks, so that a
 * second server, damaged metadata in a spare file or a bad path stops
 * the server with the message on the terminal, before anything is
 * written to the disk.
 */
static int
remap_get_ready (int thread_model)
{
  remap_next_configure (thread_model, params.plugin_cache);
  remap_listeners_note_server ();
  if (remap_store_lock_take () == -1 || check_spare_file () == -1)
    return -1;
  if (params.metrics_path &&
      remap_metrics_file_check (params.metrics_path) == -1)
    return -1;
  if (params.control_path)
    return remap_control_listen (params.control_path);
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
 * refused before the disk is opened; the exact check against the
 * layout (check_add_ranges) follows in the probe, before a format.
 */
static int
check_add_ranges_fit (uint64_t disk_size)
{
  uint32_t ss = params.options.sector_size ? params.options.sector_size
    : REMAP_MIN_SECTOR_SIZE;

  for (size_t i = 0; i < params.add_ranges.len; i++)
    if (params.add_ranges.v[i].last >= disk_size / ss) {
      nbdkit_error ("remap-add: sector %" PRIu64 " is past the end of the "
                    "disk (%" PRIu64 " bytes) at any sector size",
                    params.add_ranges.v[i].last, disk_size);
      return -1;
    }
  return 0;
}

/* The exact check, against the layout loaded (or about to be
 * formatted: the probe makes it before the format writes anything).
 */
static int
check_add_ranges (const struct remap_geometry *geo)
{
  for (size_t i = 0; i < params.add_ranges.len; i++)
    if (params.add_ranges.v[i].last >= geo->data_sectors) {
      nbdkit_error ("remap-add: sector %" PRIu64 " is past the end of the "
                    "disk (it has %" PRIu64 " sectors of %" PRIu32 " bytes)",
                    params.add_ranges.v[i].last, geo->data_sectors,
                    geo->sector_size);
      return -1;
    }
  return 0;
}

static int
apply_requests (struct remap_device *dev)
{
  int err;

  if (params.add_ranges.len == 0 && params.ddrescue_bytes.len == 0)
    return 0;
  if (params.options.readonly) {
    nbdkit_error ("remap-add and remap-ddrescue need a writable disk");
    return -1;
  }
  if (check_add_ranges (&dev->geo) == -1)
    return -1;
  for (size_t i = 0; i < params.add_ranges.len; i++) {
    const struct remap_range *r = &params.add_ranges.v[i];
    if (remap_device_add (dev, &shared_origin, r->first, r->last,
                          &err) == -1) {
      nbdkit_error ("remap-add: remapping sectors %" PRIu64 "-%" PRIu64
                    " failed: %s", r->first, r->last, strerror (err));
      return -1;
    }
  }
  for (size_t i = 0; i < params.ddrescue_bytes.len; i++) {
    uint64_t marked;
    const struct remap_range *area = &params.ddrescue_bytes.v[i];
    int r = remap_device_mark_pending_bytes (dev, area->first, area->last,
                                             &marked, &err);
    if (r == -1) {
      nbdkit_error ("remap-ddrescue: %s", strerror (err));
      return -1;
    }
    if (r == 1)
      nbdkit_debug ("remap-ddrescue: area at byte %" PRIu64 " is past the "
                    "end of the export, ignored", area->first);
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

/* Opens the plugin outside any connection, as the server-wide
 * *next and its struct remap_io.
 */
static nbdkit_next *
open_shared_next (nbdkit_backend *backend, bool readonly,
                  struct remap_next *rn, struct remap_io *io,
                  int64_t *disk_size, int *can_write)
{
  nbdkit_next *next = nbdkit_next_context_open (backend, readonly, "", 1);

  if (next == NULL) {
    nbdkit_error ("remap: cannot open the plugin outside a connection");
    return NULL;
  }
  if (next->prepare (next) == -1 ||
      (*disk_size = next->get_size (next)) == -1 ||
      (*can_write = next->can_write (next)) == -1 ||
      remap_io_from_next (next, false, rn, io) == -1) {
    next->finalize (next);
    nbdkit_next_context_close (next);
    return NULL;
  }
  return next;
}

/* The filter reads and writes the plugin one remap sector at a time
 * (spares, a remap's copy, the table), so the plugin must take
 * requests that small: checked here, or the first format or remap
 * would fail with a bare EINVAL.
 */
static int
check_plugin_minimum (nbdkit_next *next, uint32_t sector_size)
{
  uint32_t minimum, preferred, maximum;
  int r;

  remap_next_lock ();
  r = next->block_size (next, &minimum, &preferred, &maximum);
  remap_next_unlock ();
  if (r == -1)
    return -1;
  if (minimum > sector_size) {
    nbdkit_error ("remap: the plugin's minimum block size is %" PRIu32
                  " bytes, more than the remap sector size (%" PRIu32
                  " bytes): the filter could not read or write one sector; "
                  "use remap-sector-size=%" PRIu32 " or larger (with a new "
                  "table: an existing one keeps its sector size)",
                  minimum, sector_size, minimum);
    return -1;
  }
  return 0;
}

/* The checks of remap_device_open that do not depend on whether the
 * server is read-only, made with the plugin and the spare file open
 * read-only: a damaged table, a disk resized or holding data where the
 * region would go, a parameter that does not fit.  A spare file that
 * does not exist yet has nothing to check.
 */
static int
probe (nbdkit_backend *backend)
{
  struct remap_options opt = params.options;
  struct remap_file file = { .fd = -1 };
  struct remap_next rn;
  struct remap_io io;
  struct remap_device *dev = NULL;
  const struct remap_io *store = &io;
  nbdkit_next *next;
  int64_t disk_size;
  uint64_t store_size;
  int can_write, r = -1;

  next = open_shared_next (backend, true, &rn, &io, &disk_size,
                          &can_write);
  if (next == NULL)
    return -1;
  if (check_add_ranges_fit (disk_size) == -1)
    goto out;
  store_size = disk_size;
  if (!opt.internal) {
    if (access (params.spare_path, F_OK) == -1 && errno == ENOENT)
      goto new_table;
    if (remap_file_open (&file, "remap-spare", params.spare_path,
                         REMAP_FILE_SPARE) == -1)
      goto out;
    store = &file.io;
    store_size = file.size;
  }
  opt.probe = true;
  opt.readonly = false;
  dev = remap_device_open (&opt, store, store_size, disk_size);
  if (dev == NULL || check_add_ranges (&dev->geo) == -1)
    goto out;
  if (dev->geo.sector_size) {   /* an existing table */
    r = check_plugin_minimum (next, dev->geo.sector_size);
    goto out;
  }
 new_table:
  r = check_plugin_minimum (next, opt.sector_size ? opt.sector_size
                            : REMAP_DEFAULT_SECTOR_SIZE);
 out:
  remap_device_free (dev);
  remap_file_close (&file, params.spare_path, false);
  next->finalize (next);
  nbdkit_next_context_close (next);
  return r;
}

/* Loads (or formats) the metadata, starts the sync thread and hands
 * the device to the control thread, with the plugin open for writing
 * only if the server is.  The hand-over comes last and cannot fail:
 * a device freed on the error path was never the control thread's.
 */
static int
open_device (nbdkit_backend *backend, bool readonly)
{
  const struct remap_io *store;
  int64_t disk_size;
  uint64_t store_size;
  int can_write;

  shared_next = open_shared_next (backend, readonly, &shared_rn,
                                  &shared_origin, &disk_size, &can_write);
  if (shared_next == NULL)
    goto error;
  params.options.readonly = readonly || !can_write;
  if (remap_store_lock_settle (params.options.readonly) == -1)
    goto error;
  if (params.write_through && !shared_origin.can_fua)
    nbdkit_debug ("remap: remap-write-through=yes, but the plugin cannot "
                  "flush: writes go through as they are");

  if (params.options.internal) {
    store = &shared_origin;
    store_size = disk_size;
  }
  else {
    if (remap_file_open (&sparefile, "remap-spare", params.spare_path,
                         params.options.readonly ? REMAP_FILE_SPARE
                         : REMAP_FILE_WRITE | REMAP_FILE_CREATE |
                           REMAP_FILE_SPARE) == -1)
      goto error;
    /* A writer's open locked it; a reader shares it. */
    if (params.options.readonly &&
        remap_lock_share (sparefile.fd) == -1) {
      nbdkit_error ("%s is in use by remapctl (it is locked); stop that "
                    "one first", params.spare_path);
      goto error;
    }
    store_size = sparefile.size;
    store = &sparefile.io;
  }

  device = remap_device_open (&params.options, store, store_size, disk_size);
  if (device)
    device->quit_check = quitting;
  if (device == NULL || apply_requests (device) == -1 ||
      remap_device_start (device) == -1)
    goto error;
  remap_control_attach (device, &shared_origin);
  return 0;

 error:
  remap_device_free (device);
  device = NULL;
  remap_file_close (&sparefile, params.spare_path, true);
  close_shared_next ();
  return -1;
}

static void
refuse (void)
{
  refused = true;
  remap_stop_listening ();
}

/* nbdkit does not tell a filter whether the server is read-only (-r)
 * until a client connects: .preconnect, .open and .prepare get the
 * flag, .after_fork does not.  So after_fork only checks, writing
 * nothing (the plugin is opened read-only), and the first client's
 * .preconnect loads the table, formatting or repairing it only if the
 * server is writable.  The control socket and the metrics file do not
 * wait for that client, which may never come: their thread starts
 * here, and says that the table is not loaded yet until it is.
 */
static int
remap_after_fork (nbdkit_backend *backend)
{
  /* The metrics file is first written here, as the user nbdkit -u
   * changed to, so a path that user cannot write is refused before
   * the first client formats a blank disk.
   */
  if (probe (backend) == -1 ||
      remap_control_start (params.metrics_path) == -1) {
    refuse ();
    /* nbdkit exits without .cleanup: the control socket bound in
     * get_ready must not outlive us.
     */
    remap_control_stop ();
    return -1;
  }
  return 0;
}

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;

struct open_request {
  nbdkit_backend *backend;
  bool readonly;
  int r;
  bool quit;                    /* the server was stopping */
};

/* open_device runs in a thread of its own, outside the connection
 * that asked for it: nbdkit's quit checks (nbdkit_nanosleep) then
 * stop it only when the server stops, not when that client hangs up.
 */
static void *
open_thread (void *vp)
{
  struct open_request *rq = vp;

  rq->r = open_device (rq->backend, rq->readonly);
  rq->quit = rq->r == -1 && quitting ();
  return NULL;
}

static int
remap_preconnect (nbdkit_next_preconnect *next, nbdkit_backend *nxdata,
                  int readonly)
{
  struct open_request rq = { .backend = nxdata, .readonly = readonly };
  pthread_t thread;
  int r = 0, e;

  pthread_mutex_lock (&open_lock);
  if (refused) {
    nbdkit_error ("remap: refusing the client: the filter could not start "
                  "(see the first error)");
    r = -1;
  }
  else if (device == NULL) {
    if ((e = pthread_create (&thread, NULL, open_thread, &rq)) != 0) {
      nbdkit_error ("remap: pthread_create: %s", strerror (e));
      r = -1;
    }
    else {
      pthread_join (thread, NULL);
      r = rq.r;
    }
    /* Quit first: nbdkit's accept loop then stops at its next poll
     * instead of spinning on the shut-down sockets.
     */
    if (r == -1 && !rq.quit) {
      nbdkit_shutdown ();
      refuse ();
    }
  }
  pthread_mutex_unlock (&open_lock);
  if (r == -1)
    return -1;
  return next (nxdata, readonly);
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
  remap_file_close (&sparefile, params.spare_path, false);
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
  int64_t size;

  (void) readonly;
  if (device == NULL) {
    nbdkit_error ("remap: the remap table is not loaded");
    return -1;
  }
  /* The server checks every request against the size it was told. */
  remap_next_lock ();
  size = next->get_size (next);
  remap_next_unlock ();
  if (size == -1)
    return -1;
  return remap_io_from_next (next, true, &h->rn, &h->origin);
}

static int64_t
remap_get_size (nbdkit_next *next, void *handle)
{
  (void) next; (void) handle;
  return device->geo.export_size;
}

/* Block sizes: whole 512-byte blocks at least (or the plugin's larger
 * minimum), and whole remap sectors preferred, so that a well-behaved
 * client does not make us read-modify-write a sector, which is what
 * races with a remap of that sector.  A disk whose size is not a
 * multiple of 512 keeps the plugin's minimum, or its tail could not
 * be reached.
 */
static int
remap_block_size (nbdkit_next *next, void *handle, uint32_t *minimum,
                  uint32_t *preferred, uint32_t *maximum)
{
  const uint32_t ss = device->geo.sector_size;

  int r;

  (void) handle;
  remap_next_lock ();
  r = next->block_size (next, minimum, preferred, maximum);
  remap_next_unlock ();
  if (r == -1)
    return -1;
  if (*minimum == 0)
    *minimum = 1;
  if (*minimum < 512 && device->geo.export_size % 512 == 0)
    *minimum = 512;
  if (*maximum == 0)
    *maximum = 0xffffffff;
  /* Powers of two, at least max (512, minimum), at most maximum. */
  *preferred = ss > *minimum ? ss : *minimum;
  if (*preferred < 512)
    *preferred = 512;
  while (*preferred > *maximum && *preferred / 2 >= *minimum &&
         *preferred / 2 >= 512)
    *preferred /= 2;
  return 0;
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
  int r;

  if (h->origin.zero == NULL)
    return 0;
  remap_next_lock ();
  r = next->can_fast_zero (next);
  remap_next_unlock ();
  return r;
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

/* remap-write-through=yes: every write asks the plugin for FUA (nbdkit
 * turns it into write + flush for a plugin that can flush but has no
 * FUA), so that a media error the page cache would keep until a flush
 * fails this request instead: the data path then retries it sector by
 * sector, each with FUA, and moves the failing sector to a spare from
 * the client's buffer, which it still holds.
 */
static uint32_t
write_flags (const struct remap_handle *h, uint32_t flags)
{
  if (params.write_through && h->origin.can_fua)
    flags |= NBDKIT_FLAG_FUA;
  return flags;
}

static int
remap_pwrite (nbdkit_next *next, void *handle, const void *buf,
              uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct remap_handle *h = handle;

  (void) next;
  return remap_device_pwrite (device, &h->origin, buf, count, offset,
                              write_flags (h, flags), err);
}

static int
remap_zero (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  struct remap_handle *h = handle;

  (void) next;
  return remap_device_zero (device, &h->origin, count, offset,
                            write_flags (h, flags), err);
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

/* Extents: the plugin's answer, except that every sector with an
 * entry is allocated data wherever the plugin thinks it is: a
 * remapped sector lives on its spare, and a pending or lost one must
 * be read (and fail) rather than be copied as zeros by a client that
 * skips holes (qemu-img convert, nbdcopy).
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

  if (entry) {
    if (nbdkit_add_extent (rq->extents, offset, len, 0) == -1) {
      *err = errno;
      return -1;
    }
    return rq->flags & NBDKIT_FLAG_REQ_ONE ? 1 : 0;
  }
  remap_next_lock ();
  plugin = nbdkit_extents_full (rq->next, len, offset, rq->flags, err);
  remap_next_unlock ();
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
                              (offset + count - 1) / device->geo.sector_size)) {
    remap_next_lock ();
    r = next->extents (next, count, offset, flags, extents, err);
    remap_next_unlock ();
    return r;
  }
  r = remap_device_walk (device, count, offset, extents_span, &rq, err);
  return r == -1 ? -1 : 0;
}

static struct nbdkit_filter filter = {
  .name              = "remap",
  .longname          = "nbdkit bad-sector remapping filter",
  .load              = remap_load,
  .unload            = remap_unload,
  .config            = remap_params_config,
  .config_complete   = remap_params_complete,
  .config_help       = remap_config_help,
  .get_ready         = remap_get_ready,
  .after_fork        = remap_after_fork,
  .preconnect        = remap_preconnect,
  .cleanup           = remap_cleanup,
  .open              = remap_open,
  .close             = remap_close,
  .prepare           = remap_prepare,
  .get_size          = remap_get_size,
  .block_size        = remap_block_size,
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
