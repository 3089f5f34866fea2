/* nbdkit-remap: finding, checking and formatting the metadata at
 * startup, and the life of the sync thread (see device.h).
 *
 * The rule for startup is "never write over data nobody asked us to":
 * a store with no metadata is formatted without remap-format=yes only
 * when probe.c says it may be (a disk its extents prove blank, a new,
 * empty or zero spare file), and a store that holds our metadata but
 * no usable copy stops the server.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "device.h"
#include "probe.h"

/* -D remap.verbose=1: log every remap, pending sector, recovery and
 * retired spare with its numbers.
 */
NBDKIT_DLL_PUBLIC int remap_debug_verbose = 0;
NBDKIT_DLL_PUBLIC int remap_debug_selftest_bug = 0;

#define FINAL_SYNC_BUDGET_NS (500 * UINT64_C (1000000))

static const char *counter_names[REMAP_NR_COUNTERS_USED] = {
  [REMAP_COUNTER_READS] = "reads",
  [REMAP_COUNTER_WRITES] = "writes",
  [REMAP_COUNTER_BYTES_READ] = "bytes_read",
  [REMAP_COUNTER_BYTES_WRITTEN] = "bytes_written",
  [REMAP_COUNTER_REDIRECTED] = "redirected_ios",
  [REMAP_COUNTER_READ_ERRORS] = "read_errors",
  [REMAP_COUNTER_WRITE_ERRORS] = "write_errors",
  [REMAP_COUNTER_RETRIES] = "retries",
  [REMAP_COUNTER_REMAPS] = "remaps",
  [REMAP_COUNTER_RECOVERED] = "recovered",
  [REMAP_COUNTER_SYNCS] = "metadata_syncs",
  [REMAP_COUNTER_LAST_SYNC_NS] = "last_sync_ns",
};

const char *
remap_counter_name (enum remap_counter c)
{
  return c < REMAP_NR_COUNTERS_USED ? counter_names[c] : "unknown";
}

void
remap_options_init (struct remap_options *opt)
{
  memset (opt, 0, sizeof *opt);
  opt->read_retries = REMAP_DEFAULT_READ_RETRIES;
  opt->warn_x100[0] = 7500;
  opt->warn_x100[1] = 9000;
  opt->nr_warn = 2;
  opt->storm_limit = REMAP_DEFAULT_STORM_LIMIT;
}

int
remap_parse_percent (const char *value, uint32_t *x100, uint32_t max_x100)
{
  unsigned whole = 0, frac = 0, digits = 0;
  const char *p = value;

  if (*p < '0' || *p > '9')
    return -1;
  while (*p >= '0' && *p <= '9' && whole <= 100)
    whole = whole * 10 + (*p++ - '0');
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9' && digits < 2) {
      frac = frac * 10 + (*p++ - '0');
      digits++;
    }
    if (digits == 0)
      return -1;
    if (digits == 1)
      frac *= 10;
  }
  if (strcmp (p, "%") != 0)
    return -1;
  *x100 = whole * 100 + frac;
  return *x100 > 0 && *x100 <= max_x100 ? 0 : -1;
}

static int
spare_count_for (const struct remap_options *opt, uint64_t disk_size,
                 uint32_t sector_size, uint32_t *count)
{
  uint64_t n;

  if (opt->spare_bytes)
    n = (opt->spare_bytes + sector_size - 1) / sector_size;
  else {
    uint32_t pct = opt->spare_percent_x100 ? opt->spare_percent_x100
      : REMAP_DEFAULT_SPARE_PERCENT_X100;
    n = disk_size / sector_size * pct / 10000;
    if (!opt->spare_percent_x100 && n < REMAP_DEFAULT_MIN_SPARES)
      n = REMAP_DEFAULT_MIN_SPARES;
  }
  if (n < REMAP_MIN_SPARES || n > REMAP_MAX_SPARES) {
    nbdkit_error ("remap-spare-size: %" PRIu64 " spare sectors of %" PRIu32
                  " bytes is out of range (%d to %" PRIu32 " sectors)",
                  n, sector_size, REMAP_MIN_SPARES,
                  (uint32_t) REMAP_MAX_SPARES);
    return -1;
  }
  *count = n;
  return 0;
}

/* The metadata found must belong to this disk and match what the user
 * asked for explicitly.
 */
static int
check_identity (const struct remap_options *opt,
                const struct remap_geometry *geo, uint64_t disk_size,
                uint32_t want_spares)
{
  /* A disk resized by less than a sector still has its region at its
   * end: say so, since remap-format=yes would be the wrong way out.
   */
  if (opt->internal && disk_size > geo->disk_size) {
    nbdkit_error ("%s grew by %" PRIu64 " bytes since its remap metadata "
                  "was made for a disk of %" PRIu64 " bytes, too little to "
                  "move the remap region.  Give the disk back its size, or "
                  "put nbdkit-truncate-filter truncate=%" PRIu64 " below "
                  "this filter; or grow it by the size of the region more "
                  "and run 'remapctl --disk=DISK move-region'",
                  opt->store_name, disk_size - geo->disk_size,
                  geo->disk_size, geo->disk_size);
    return -1;
  }
  if (opt->internal && disk_size < geo->disk_size) {
    nbdkit_error ("%s shrank by %" PRIu64 " bytes since its remap metadata "
                  "was made for a disk of %" PRIu64 " bytes.  Give the "
                  "disk back its size to use its remaps",
                  opt->store_name, geo->disk_size - disk_size,
                  geo->disk_size);
    return -1;
  }
  /* A spare file cannot tell another disk from this one resized. */
  if (geo->disk_size != disk_size) {
    char truncate_hint[128] = "";
    if (disk_size > geo->disk_size)
      snprintf (truncate_hint, sizeof truncate_hint, ", or put "
                "nbdkit-truncate-filter truncate=%" PRIu64 " below this "
                "filter", geo->disk_size);
    nbdkit_error ("%s was formatted for a disk of %" PRIu64 " bytes, but "
                  "the plugin's disk is %" PRIu64 " bytes: either it is "
                  "another disk's spare file (give this disk's), or the "
                  "disk was resized (give it back its size%s).  "
                  "remap-format=yes would start a new, empty table, "
                  "discarding every remap in it",
                  opt->store_name, geo->disk_size, disk_size, truncate_hint);
    return -1;
  }
  if (opt->sector_size && opt->sector_size != geo->sector_size) {
    nbdkit_error ("remap-sector-size=%" PRIu32 " does not match the sector "
                  "size %" PRIu32 " that %s was formatted with; drop the "
                  "parameter to use the existing layout",
                  opt->sector_size, geo->sector_size, opt->store_name);
    return -1;
  }
  if ((opt->spare_bytes || opt->spare_percent_x100) &&
      want_spares != geo->spare_count) {
    nbdkit_error ("remap-spare-size asks for %" PRIu32 " spare sectors, but "
                  "%s was formatted with %" PRIu32 "; drop the parameter to "
                  "use the existing layout",
                  want_spares, opt->store_name, geo->spare_count);
    return -1;
  }
  return 0;
}

/* Says where a metadata copy went after its sectors failed a write. */
static void
log_moved_copies (struct remap_device *dev,
                  const uint32_t was_at[REMAP_COPIES])
{
  for (int i = 0; i < REMAP_COPIES; i++) {
    uint64_t from, to, table_offset;
    uint32_t first, n;

    if (dev->md.location[i] == was_at[i] ||
        !remap_relocation_slot (&dev->geo, dev->md.location[i] - 1,
                                &first, &n))
      continue;
    remap_copy_offsets (&dev->geo, i, was_at[i], &from, &table_offset);
    remap_copy_offsets (&dev->geo, i, dev->md.location[i], &to,
                        &table_offset);
    nbdkit_error ("remap: warning: metadata copy %c could not be written "
                  "at offset %" PRIu64 " (a failing sector under it); moved "
                  "it to spare sectors %" PRIu32 "-%" PRIu32 " at offset %"
                  PRIu64 ", which are no longer spares", 'A' + i, from,
                  first, first + n - 1, to);
  }
}

/* The sync thread's write: the table's sectors, then the retired
 * spares, with the counters in the header.
 */
static int
device_sync_write (void *vp)
{
  struct remap_device *dev = vp;
  CLEANUP_FREE struct remap_entry *entries = NULL;
  CLEANUP_FREE uint32_t *retired = NULL;
  struct timespec t0, t1;
  struct remap_entry *all;
  ssize_t n, nr_retired;
  uint32_t was_at[REMAP_COPIES];
  bool degraded;
  int err;

  /* A read-only server writes nothing: what it learns (pending
   * sectors) stays in memory.
   */
  if (dev->opt.readonly)
    return 0;
  n = remap_table_snapshot (dev->table,
                            REMAP_STATE_REMAPPED | REMAP_STATE_PENDING,
                            &entries);
  nr_retired = remap_spares_retired_list (dev->spares, &retired);
  if (n == -1 || nr_retired == -1 ||
      (all = realloc (entries, (n + nr_retired + 1) * sizeof *all)) == NULL) {
    nbdkit_error ("remap: metadata sync: out of memory");
    return -1;
  }
  entries = all;
  for (ssize_t i = 0; i < nr_retired; i++)
    entries[n + i] = (struct remap_entry) {
      .sector = REMAP_NO_SECTOR, .spare = retired[i],
      .state = REMAP_STATE_RETIRED,
    };

  remap_counter_add (dev, REMAP_COUNTER_SYNCS, 1);
  for (int i = 0; i < REMAP_NR_COUNTERS; i++)
    dev->md.counters[i] = i < REMAP_NR_COUNTERS_USED
      ? remap_device_counter (dev, i) : 0;
  clock_gettime (CLOCK_MONOTONIC, &t0);
  memcpy (was_at, dev->md.location, sizeof was_at);
  if (remap_metadata_write (&dev->md, entries, n + nr_retired,
                            &degraded, &err) == -1) {
    nbdkit_error ("remap: writing the remap table failed: %s; the new "
                  "remaps are not durable and writes that need them fail "
                  "until a metadata write succeeds", strerror (err));
    errno = err;
    return -1;
  }
  clock_gettime (CLOCK_MONOTONIC, &t1);
  __atomic_store_n (&dev->counters[REMAP_COUNTER_LAST_SYNC_NS],
                    (uint64_t) (t1.tv_sec - t0.tv_sec) * 1000000000 +
                    t1.tv_nsec - t0.tv_nsec, __ATOMIC_RELAXED);
  log_moved_copies (dev, was_at);
  /* Said once when it happens and once when it is over, not on every
   * write.
   */
  if (degraded && !dev->redundancy_reduced)
    nbdkit_error ("remap: warning: a metadata copy could not be written; "
                  "the table is durable in the other copy only (reduced "
                  "redundancy)");
  else if (!degraded && dev->redundancy_reduced)
    nbdkit_error ("remap: every metadata copy is written again: full "
                  "redundancy restored");
  dev->redundancy_reduced = degraded;
  remap_verbose ("wrote metadata generation %" PRIu64 " with %zd entries",
                 dev->md.generation, n + nr_retired);
  return 0;
}

static uint64_t
monotonic_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool
remap_device_quitting (struct remap_device *dev)
{
  return __atomic_load_n (&dev->stopping, __ATOMIC_RELAXED) ||
    (dev->quit_check && dev->quit_check ());
}

static bool
device_quitting (void *vp)
{
  return remap_device_quitting (vp);
}

/* The metadata writer stops between plugin calls when the server
 * quits, except for the last write at shutdown, which has a small
 * time budget instead.
 */
static bool
metadata_should_stop (void *vp)
{
  struct remap_device *dev = vp;

  if (dev->final_deadline_ns)
    return monotonic_ns () > dev->final_deadline_ns;
  return dev->quit_check && dev->quit_check ();
}

static int
take_metadata_run (void *spares, uint32_t first, uint32_t count)
{
  return remap_spares_take_run (spares, first, count);
}

static void
release_metadata_run (void *spares, uint32_t first, uint32_t count)
{
  remap_spares_release_run (spares, first, count);
}

/* Builds the in-memory state from a geometry and its entries. */
static int
build_state (struct remap_device *dev, const struct remap_geometry *geo,
             const struct remap_entry *entries, size_t n)
{
  dev->geo = *geo;
  dev->sector_shift = __builtin_ctz (geo->sector_size);
  dev->md.geo = *geo;
  dev->table = remap_table_new (geo->data_sectors);
  dev->spares = remap_spares_new (geo->spare_count);
  dev->sync = remap_sync_new (device_sync_write, dev);
  if (!dev->table || !dev->spares || !dev->sync) {
    nbdkit_error ("remap: out of memory");
    return -1;
  }
  remap_sync_set_abort (dev->sync, device_quitting, dev);
  dev->md.abort_fn = metadata_should_stop;
  dev->md.abort_opaque = dev;
  dev->md.take_run = take_metadata_run;
  dev->md.release_run = release_metadata_run;
  dev->md.run_opaque = dev->spares;
  /* Sector entries come first, retired spares after them. */
  size_t nr_sectors = 0;
  while (nr_sectors < n && entries[nr_sectors].state != REMAP_STATE_RETIRED)
    nr_sectors++;
  if (remap_table_load (dev->table, entries, nr_sectors) == -1) {
    nbdkit_error ("remap: loading the table: %m");
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    int r = 0;
    if (entries[i].state == REMAP_STATE_REMAPPED)
      r = remap_spares_mark_used (dev->spares, entries[i].spare);
    else if (entries[i].state == REMAP_STATE_RETIRED)
      r = remap_spares_mark_retired (dev->spares, entries[i].spare);
    else
      dev->pending_now++;
    if (r == -1) {
      nbdkit_error ("the remap table of %s is damaged: spare %" PRIu32
                    " is listed twice; refusing to start",
                    dev->opt.store_name, entries[i].spare);
      return -1;
    }
  }
  return 0;
}

/* Which parameter to blame when the spare area does not fit. */
static const char *
layout_param (const struct remap_options *opt)
{
  return opt->spare_bytes || opt->spare_percent_x100 ? "remap-spare-size"
    : "remap";
}

/* The layout a format gives the store. */
static int
compute_layout (struct remap_geometry *geo, const struct remap_options *opt,
                uint64_t disk_size, uint32_t sector_size, uint32_t spares)
{
  char why[512];

  if (remap_geometry_compute (geo, opt->internal, disk_size, sector_size,
                              spares, why, sizeof why) == -1) {
    nbdkit_error ("%s: cannot lay out the spare area: %s",
                    layout_param (opt), why);
    return -1;
  }
  return 0;
}

static int
format_store (struct remap_device *dev, const struct remap_options *opt,
              uint64_t disk_size, uint32_t sector_size, uint32_t spares)
{
  struct remap_geometry geo;
  int err;

  if (opt->readonly) {
    nbdkit_error ("%s has no remap metadata and the server is read-only, "
                  "so it cannot be formatted", opt->store_name);
    return -1;
  }
  if (compute_layout (&geo, opt, disk_size, sector_size, spares) == -1)
    return -1;
  if (build_state (dev, &geo, NULL, 0) == -1)
    return -1;
  if (remap_metadata_format (&dev->md, &err) == -1) {
    nbdkit_error ("remap: formatting %s failed: %s", opt->store_name,
                  strerror (err));
    return -1;
  }
  dev->geo = dev->md.geo;       /* now with its identity */
  nbdkit_debug ("remap: formatted %s: %" PRIu32 " spare sectors of %"
                PRIu32 " bytes, export size %" PRIu64,
                opt->store_name, geo.spare_count, geo.sector_size,
                geo.export_size);
  return 0;
}

/* remap-format=yes: a spare file is emptied so that no header of an
 * older, larger layout is left at its end to be found later.  (The
 * store lock, taken before anything was read, already keeps out any
 * other user of the old table.)
 */
static int
check_format_allowed (const struct remap_options *opt,
                      const struct remap_io *store)
{
  int err;

  if (opt->readonly) {
    nbdkit_error ("remap-format: the server is read-only, so nothing can "
                  "be formatted");
    return -1;
  }
  if (store->truncate && !opt->probe &&
      store->truncate (store->opaque, 0, &err) == -1) {
    nbdkit_error ("remap-format: emptying %s: %s", opt->store_name,
                  strerror (err));
    return -1;
  }
  return 0;
}

/* A device with its locks, before any table is attached. */
static struct remap_device *
device_new (const struct remap_options *opt, const struct remap_io *store)
{
  struct remap_device *dev = calloc (1, sizeof *dev);

  if (dev == NULL) {
    nbdkit_error ("remap: out of memory");
    return NULL;
  }
  pthread_mutex_init (&dev->remap_lock, NULL);
  for (int i = 0; i < REMAP_UNIT_STRIPES; i++)
    pthread_mutex_init (&dev->unit_locks[i], NULL);
  pthread_mutex_init (&dev->health_lock, NULL);
  pthread_mutex_init (&dev->flush_lock, NULL);
  pthread_mutex_init (&dev->drain_lock[0], NULL);
  pthread_mutex_init (&dev->drain_lock[1], NULL);
  pthread_cond_init (&dev->flush_cond, NULL);
  dev->opt = *opt;
  dev->store = store;
  dev->md.store = store;
  if (remap_counters_init (dev) == -1) {
    nbdkit_error ("remap: out of memory");
    remap_device_free (dev);
    return NULL;
  }
  return dev;
}

/* Takes over what a load found: geometry, entries, generation, which
 * copies are current, counters.
 */
static int
adopt_loaded (struct remap_device *dev, const struct remap_load_result *lr)
{
  if (build_state (dev, &lr->header.geo, lr->entries,
                   lr->header.entry_count) == -1)
    return -1;
  remap_metadata_adopt (&dev->md, lr);
  memcpy (dev->counters, lr->header.counters, sizeof dev->counters);
  /* The spares under a moved copy are not the pool's. */
  for (int i = 0; i < REMAP_COPIES; i++) {
    uint32_t first, n;
    if (dev->md.location[i] != REMAP_LOCATION_HOME &&
        remap_relocation_slot (&dev->geo, dev->md.location[i] - 1,
                               &first, &n) &&
        remap_spares_take_run (dev->spares, first, n) == -1) {
      nbdkit_error ("the remap table of %s is damaged: metadata copy %c "
                    "lies on spares the table also uses; refusing to start",
                    dev->opt.store_name, 'A' + i);
      return -1;
    }
  }
  return 0;
}

struct remap_device *
remap_device_view (const struct remap_options *opt,
                   const struct remap_io *store,
                   const struct remap_load_result *lr)
{
  struct remap_options ro = *opt;
  struct remap_device *dev;

  ro.readonly = true;
  dev = device_new (&ro, store);
  if (dev && adopt_loaded (dev, lr) == -1) {
    remap_device_free (dev);
    return NULL;
  }
  return dev;
}

void
remap_device_report_damaged (const struct remap_options *opt,
                             const struct remap_load_result *lr)
{
  char what[512];

  remap_metadata_describe (lr, what, sizeof what);
  nbdkit_error ("the remap metadata of %s is damaged and no copy can be "
                "used (%s); refusing to start so that nothing is lost.  "
                "Inspect it with remapctl check, or use remap-format=yes "
                "to discard it (every remap in it is lost)",
                opt->store_name, what);
}

struct remap_device *
remap_device_open (const struct remap_options *opt,
                   const struct remap_io *store, uint64_t store_size,
                   uint64_t disk_size)
{
  struct remap_device *dev = device_new (opt, store);
  struct remap_load_result lr;
  uint32_t sector_size = opt->sector_size ? opt->sector_size
    : REMAP_DEFAULT_SECTOR_SIZE;
  uint32_t spares;
  char what[512];

  memset (&lr, 0, sizeof lr);
  if (dev == NULL)
    return NULL;

  if (spare_count_for (opt, disk_size, sector_size, &spares) == -1)
    goto error;

  if (opt->format) {
    if (check_format_allowed (opt, store) == -1)
      goto error;
    if (opt->probe)
      goto probed_format;
    if (format_store (dev, opt, disk_size, sector_size, spares) == -1)
      goto error;
    remap_health_check_spares (dev);
    return dev;
  }

  remap_metadata_load (store, store_size, opt->internal, opt->sector_size,
                       spares, &lr);
  /* Where every header looked for was unreadable, a disk that the
   * extents prove blank holds no metadata: only a bad sector.
   */
  if (remap_probe_nothing_readable (&lr) && opt->internal) {
    bool blank, known;
    int err;
    if (remap_probe_blank (store, disk_size, &blank, &known, &err) == 0 &&
        blank)
      lr.found = REMAP_FOUND_NOTHING;
  }
  switch (lr.found) {
  case REMAP_FOUND_NOTHING:
    if (remap_probe_may_format (opt, store, store_size, disk_size,
                                sector_size, spares) == -1)
      goto error;
    if (opt->probe)
      goto probed_format;
    if (format_store (dev, opt, disk_size, sector_size, spares) == -1)
      goto error;
    remap_health_check_spares (dev);
    return dev;

  case REMAP_FOUND_DAMAGED:
    /* Where no header could be read at all, on a disk that is not
     * blank, nothing says it ever held a table: it is judged by what
     * it holds, like a disk without one, so that a disk with data and
     * a bad last sector is pointed to external mode, not told to
     * discard a table with remap-format=yes.
     */
    if (remap_probe_nothing_readable (&lr) && opt->internal) {
      remap_metadata_describe (&lr, what, sizeof what);
      nbdkit_error ("no remap metadata header of %s can be read (%s): if "
                    "it holds remap metadata, its remaps cannot be used "
                    "until a header reads again (see remapctl check)",
                    opt->store_name, what);
      if (remap_probe_may_format (opt, store, store_size, disk_size,
                                  sector_size, spares) == -1)
        goto error;
    }
    remap_device_report_damaged (opt, &lr);
    goto error;

  case REMAP_FOUND_VALID:
    break;
  }

  if (spare_count_for (opt, disk_size, lr.header.geo.sector_size,
                       &spares) == -1 ||
      check_identity (opt, &lr.header.geo, disk_size, spares) == -1)
    goto error;
  if (adopt_loaded (dev, &lr) == -1)
    goto error;
  if (opt->probe) {
    free (lr.entries);
    return dev;
  }
  nbdkit_debug ("remap: loaded %s: generation %" PRIu64 ", %" PRIu32
                " entries, %" PRIu32 " of %" PRIu32 " spares used",
                opt->store_name, lr.header.generation, lr.header.entry_count,
                remap_spares_used (dev->spares), lr.header.geo.spare_count);

  if (lr.needs_repair) {
    remap_metadata_describe (&lr, what, sizeof what);
    if (opt->readonly)
      nbdkit_error ("remap: warning: metadata of %s needs repair (%s), "
                    "but the server is read-only", opt->store_name, what);
    else {
      nbdkit_error ("remap: warning: repairing the metadata of %s (%s)",
                    opt->store_name, what);
      remap_sync_mark_changed (dev->sync);
      if (remap_sync_now (dev->sync) == -1) {
        nbdkit_error ("remap: the metadata of %s could not be repaired: no "
                      "copy could be written anywhere, so this server could "
                      "not make a remap durable; refusing to start.  Start "
                      "nbdkit with -r to serve the disk read-only from the "
                      "copy in use", opt->store_name);
        goto error;
      }
    }
  }
  free (lr.entries);
  remap_health_check_spares (dev);
  return dev;

  /* A probe of a store that would be formatted gets the layout the
   * format would give (dev->geo), so that the caller can check its
   * parameters against it before anything is written.
   */
 probed_format:
  if (compute_layout (&dev->geo, opt, disk_size, sector_size, spares) == 0)
    return dev;
 error:
  free (lr.entries);
  remap_device_free (dev);
  return NULL;
}

int
remap_device_start (struct remap_device *dev)
{
  if (remap_sync_start (dev->sync) == -1) {
    nbdkit_error ("remap: cannot start the metadata sync thread: %m");
    return -1;
  }
  return 0;
}

void
remap_device_stop (struct remap_device *dev)
{
  __atomic_store_n (&dev->stopping, true, __ATOMIC_RELAXED);

  remap_sync_stop (dev->sync);
  /* Whatever changed after the thread's last write goes out now.
   * Nothing acknowledged depends on it (every acknowledged remap is
   * durable already), so a plugin too slow to do it quickly is not
   * waited for: the write gets a budget, and is skipped when the last
   * one failed (it was stopped by the quit, or the store is failing)
   * or already took longer than that.
   */
  if (remap_sync_is_dirty (dev->sync)) {
    struct remap_sync_stats st;
    remap_sync_get_stats (dev->sync, &st);
    if (st.last_failed || st.last_attempt_ns > FINAL_SYNC_BUDGET_NS)
      nbdkit_debug ("remap: skipping the last metadata write at shutdown "
                    "(the previous one %s after %" PRIu64 " ms)",
                    st.last_failed ? "failed" : "succeeded",
                    st.last_attempt_ns / 1000000);
    else {
      dev->final_deadline_ns = monotonic_ns () + FINAL_SYNC_BUDGET_NS;
      remap_sync_now (dev->sync);
    }
  }
  remap_device_log_counters (dev);
}

void
remap_device_free (struct remap_device *dev)
{
  if (dev == NULL)
    return;
  remap_sync_free (dev->sync);
  remap_spares_free (dev->spares);
  remap_table_free (dev->table);
  pthread_mutex_destroy (&dev->remap_lock);
  for (int i = 0; i < REMAP_UNIT_STRIPES; i++)
    pthread_mutex_destroy (&dev->unit_locks[i]);
  pthread_cond_destroy (&dev->flush_cond);
  pthread_mutex_destroy (&dev->flush_lock);
  pthread_mutex_destroy (&dev->drain_lock[0]);
  pthread_mutex_destroy (&dev->drain_lock[1]);
  pthread_mutex_destroy (&dev->health_lock);
  remap_counters_free (dev);
  free (dev);
}

int
remap_device_sync (struct remap_device *dev, int *err)
{
  if (remap_sync_wait (dev->sync, remap_sync_mark_changed (dev->sync)) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}


uint64_t
remap_device_pending (struct remap_device *dev)
{
  return __atomic_load_n (&dev->pending_now, __ATOMIC_RELAXED);
}

void
remap_device_log_counters (struct remap_device *dev)
{
  char buf[1024];
  size_t used = 0;

  for (int i = 0; i < REMAP_NR_COUNTERS_USED && used < sizeof buf; i++) {
    int n = snprintf (buf + used, sizeof buf - used, "%s=%" PRIu64 " ",
                      remap_counter_name (i), remap_device_counter (dev, i));
    if (n < 0)
      return;
    used += n;
  }
  nbdkit_debug ("remap: counters: %spending=%" PRIu64 " spares_used=%"
                PRIu32 " spares_retired=%" PRIu32 " spares_total=%" PRIu32,
                buf, remap_device_pending (dev),
                remap_spares_used (dev->spares),
                remap_spares_retired (dev->spares),
                remap_spares_total (dev->spares));
}
