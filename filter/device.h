/* nbdkit-remap: the remapped device, tying the table, the spares, the
 * metadata and the sync thread to the data path.
 *
 * The data path works on byte ranges of the export.  A request that
 * touches no remapped sector is passed to the origin (the plugin) as
 * one call, unchanged; otherwise it is split at the remapped sectors,
 * whose pieces go to their spares in the store.
 */
#ifndef REMAP_DEVICE_H
#define REMAP_DEVICE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "format.h"
#include "io.h"
#include "metadata.h"
#include "spares.h"
#include "sync.h"
#include "table.h"

/* Counters, saved in the metadata header in this order.  Append only:
 * the index is part of the on-disk format.
 */
enum remap_counter {
  REMAP_COUNTER_READS,
  REMAP_COUNTER_WRITES,
  REMAP_COUNTER_BYTES_READ,
  REMAP_COUNTER_BYTES_WRITTEN,
  REMAP_COUNTER_REDIRECTED,     /* I/Os that touched a remapped sector */
  REMAP_COUNTER_READ_ERRORS,    /* sectors that failed every read try */
  REMAP_COUNTER_WRITE_ERRORS,   /* sector writes the plugin failed */
  REMAP_COUNTER_RETRIES,        /* extra tries after a failure */
  REMAP_COUNTER_REMAPS,         /* sectors moved to a spare */
  REMAP_COUNTER_RECOVERED,      /* pending sectors that rewrote fine */
  REMAP_COUNTER_SYNCS,          /* metadata writes */
  REMAP_COUNTER_LAST_SYNC_NS,   /* duration of the last one */
  REMAP_NR_COUNTERS_USED
};
extern const char *remap_counter_name (enum remap_counter c);

#define REMAP_COUNTER_SLOTS 64
struct remap_counter_slot {
  uint64_t v[REMAP_NR_COUNTERS_USED];
  uint64_t window[2];           /* odd while a window is open (sector.h) */
} __attribute__ ((aligned (64)));

/* Windows (sector.h): a write to normal sectors, a walk over entries. */
enum remap_window_kind { REMAP_WINDOW_WRITE, REMAP_WINDOW_WALK };

/* Unit locks, by a hash of the sector (sector.h). */
#define REMAP_UNIT_STRIPES_LOG2 8
#define REMAP_UNIT_STRIPES (1 << REMAP_UNIT_STRIPES_LOG2)

#define REMAP_MAX_WARN 8

struct remap_options {
  bool internal;                /* region at the end of the plugin disk */
  uint32_t sector_size;         /* 0: default, or what is on disk */
  uint64_t spare_bytes;         /* 0: use spare_percent */
  uint32_t spare_percent_x100;  /* 0: default */
  bool format;                  /* overwrite whatever is there */
  bool readonly;
  /* Check as for a writable server, but write and lock nothing: the
   * start-up checks made before nbdkit says whether it is read-only.
   */
  bool probe;
  const char *store_name;       /* for messages: file name or "the disk" */

  uint32_t read_retries;        /* extra tries of a failed sector read */
  bool verify;                  /* read back and compare every write */
  bool pending_partial_zero;    /* partial write to pending: zero-fill */
  uint32_t warn_x100[REMAP_MAX_WARN];  /* spare-use warnings, ascending */
  unsigned nr_warn;
  uint32_t storm_limit;         /* new bad sectors per minute to alarm */
};

/* Fills the defaults of everything but the layout. */
extern void remap_options_init (struct remap_options *opt);
/* "N%" with up to two decimals, in hundredths: 0 < *x100 <= max_x100,
 * else -1.  For remap-spare-size, remap-warn and remapctl --spare-size.
 */
extern int remap_parse_percent (const char *value, uint32_t *x100,
                                uint32_t max_x100);

#define REMAP_DEFAULT_SPARE_PERCENT_X100 100  /* 1% */
#define REMAP_DEFAULT_MIN_SPARES 64
#define REMAP_DEFAULT_READ_RETRIES 3
#define REMAP_DEFAULT_STORM_LIMIT 64

struct remap_device {
  struct remap_geometry geo;
  /* log2 of the sector size: the fast path shifts, a division would
   * cost it tens of cycles per request.
   */
  unsigned sector_shift;
  struct remap_table *table;
  struct remap_spares *spares;
  struct remap_sync *sync;
  struct remap_metadata md;
  const struct remap_io *store;  /* spares and metadata */
  /* A spare write completed since a store flush began (see flush). */
  bool store_dirty;
  /* Flushes of the store, one at a time, shared by the flushes that
   * wait meanwhile (datapath.c), under flush_lock.
   */
  pthread_mutex_t flush_lock;
  pthread_cond_t flush_cond;
  uint64_t flush_started;       /* store flushes begun */
  uint64_t flush_done;          /* ... and finished */
  uint64_t flush_failed;        /* the last one that failed */
  int flush_errno;
  bool flush_running;

  struct remap_options opt;
  bool redundancy_reduced;      /* last metadata write missed a copy */
  /* Set by the glue: true once nbdkit is quitting (or the client of
   * the calling thread is gone), so recovery loops and waiters stop.
   */
  bool (*quit_check) (void);
  uint64_t final_deadline_ns;   /* budget of the last write at shutdown */
  bool pending_full_logged;     /* under remap_lock */

  /* Serializes changes of the table and the spare pool (sector.c). */
  pthread_mutex_t remap_lock;
  bool stopping;
  /* Per-unit exclusion (sector.h): a unit being moved, relocated,
   * copied or unmapped is written by its mover only.
   */
  pthread_mutex_t unit_locks[REMAP_UNIT_STRIPES];
  /* Windows of threads with no counter slot, by kind (counters.c). */
  uint64_t windows_unslotted[2][2];
  unsigned windows_side[2];
  pthread_mutex_t drain_lock[2];

  /* Counters: what was loaded plus what no slot took, updated
   * atomically; and one slot per live thread (counters.c), so that
   * connections on different CPUs never write the same cache line.
   * A thread gives its slot back when it exits; the slot keeps its
   * counts and windows for the next owner.
   */
  uint64_t counters[REMAP_NR_COUNTERS];
  uint64_t id;                  /* tells threads' cached slots apart */
  struct remap_counter_slot *slots;
  unsigned nr_slots;            /* ever owned: [0, nr_slots) (atomic) */
  /* Under the slots lock of counters.c: */
  uint64_t slots_owned;         /* bit i: slot i has a live owner */
  uint64_t threads_unslotted;   /* threads that found no free slot */
  struct remap_device *live_next;  /* registry of live devices */
  uint64_t pending_now;                  /* atomic */

  /* Health (health.c), under health_lock. */
  pthread_mutex_t health_lock;
  unsigned warned;              /* thresholds already logged */
  bool exhausted_logged;
  uint64_t storm_window_start, storm_count;
  bool storm_logged;
};

/* Finds, checks or formats the metadata in store (store_size bytes;
 * for the internal region store is the plugin itself and store_size
 * its size) and builds the in-memory state.  Reports problems with
 * nbdkit_error.  Does not start the sync thread.  With opt->probe it
 * stops before the first write (format, repair), takes the lock only
 * shared, and returns a device fit only for remap_device_free and for
 * reading its geo: the layout found, or the one a format would give.
 */
extern struct remap_device *remap_device_open (const struct remap_options *opt,
                                               const struct remap_io *store,
                                               uint64_t store_size,
                                               uint64_t disk_size);
/* The refusal of a store whose metadata is ours but unusable
 * (REMAP_FOUND_DAMAGED), describing each copy.
 */
extern void remap_device_report_damaged (const struct remap_options *opt,
                                         const struct remap_load_result *lr);
/* A read-only device over what remap_metadata_load found, taking no
 * lock and writing nothing: for tools that only report.
 */
extern struct remap_device *remap_device_view (const struct remap_options *opt,
                                               const struct remap_io *store,
                                               const struct remap_load_result *lr);
extern int remap_device_start (struct remap_device *dev);
/* Stops the sync thread (flag, wake, join), releases every waiter and
 * writes the table one last time if it changed.
 */
extern void remap_device_stop (struct remap_device *dev);
extern void remap_device_free (struct remap_device *dev);

/* True when recovery should stop: the device is stopping, or the
 * glue's quit_check says the server is quitting.
 */
extern bool remap_device_quitting (struct remap_device *dev);

/* The data path.  origin is the plugin for this request. */
extern int remap_device_pread (struct remap_device *dev,
                               const struct remap_io *origin, void *buf,
                               uint32_t count, uint64_t offset,
                               uint32_t flags, int *err);
extern int remap_device_pwrite (struct remap_device *dev,
                                const struct remap_io *origin,
                                const void *buf, uint32_t count,
                                uint64_t offset, uint32_t flags, int *err);
extern int remap_device_zero (struct remap_device *dev,
                              const struct remap_io *origin, uint32_t count,
                              uint64_t offset, uint32_t flags, int *err);
extern int remap_device_trim (struct remap_device *dev,
                              const struct remap_io *origin, uint32_t count,
                              uint64_t offset, uint32_t flags, int *err);
extern int remap_device_cache (struct remap_device *dev,
                               const struct remap_io *origin, uint32_t count,
                               uint64_t offset, uint32_t flags, int *err);
extern int remap_device_flush (struct remap_device *dev,
                               const struct remap_io *origin, int *err);

/* Splits [offset, offset+count) into spans: span_fn is called in
 * order with entry NULL for runs of ordinary sectors, and with the
 * entry for each piece of a remapped or pending sector.  span_fn returns 0 to
 * go on, 1 to stop early, -1 on error.
 */
typedef int (*remap_span_fn) (void *opaque, uint64_t offset, uint32_t len,
                              const struct remap_entry *entry, int *err);
extern int remap_device_walk (struct remap_device *dev, uint32_t count,
                              uint64_t offset, remap_span_fn span_fn,
                              void *opaque, int *err);

/* Writes the table now and waits for it to be durable. */
extern int remap_device_sync (struct remap_device *dev, int *err);

extern uint64_t remap_device_counter (struct remap_device *dev,
                                      enum remap_counter c);
/* Adds to a counter from any thread (counters.c). */
extern void remap_counter_add (struct remap_device *dev,
                               enum remap_counter c, uint64_t n);
/* One request of n bytes: requests += 1, bytes += n. */
extern void remap_count_request (struct remap_device *dev,
                                 enum remap_counter requests,
                                 enum remap_counter bytes, uint64_t n);
extern int remap_counters_init (struct remap_device *dev);
/* Before the device is freed: from now on a thread that exits no
 * longer gives its slot back to it.
 */
extern void remap_counters_free (struct remap_device *dev);
/* Slots owned by live threads now, and threads that found every slot
 * owned and count through the shared atomics (for the status report).
 */
extern void remap_counters_slot_stats (struct remap_device *dev,
                                       unsigned *owned,
                                       uint64_t *threads_unslotted);
/* Sectors pending now. */
extern uint64_t remap_device_pending (struct remap_device *dev);
/* Logs every counter with nbdkit_debug (at shutdown). */
extern void remap_device_log_counters (struct remap_device *dev);

/* Remaps sectors first..last (inclusive) now, copying what can be read
 * of each to its spare and marking the rest pending; sectors already
 * remapped are left alone.  Does not wait for the table to be durable:
 * call remap_device_sync after a batch.
 */
extern int remap_device_add (struct remap_device *dev,
                             const struct remap_io *origin,
                             uint64_t first, uint64_t last, int *err);
/* Moves a remapped sector back to its original place, if the original
 * takes the data and reads it back right; else fails with EIO and the
 * sector stays remapped.
 */
extern int remap_device_unmap (struct remap_device *dev,
                               const struct remap_io *origin,
                               uint64_t sector, int *err);
/* Marks sectors first..last pending (unless remapped already). */
extern int remap_device_mark_pending (struct remap_device *dev,
                                      uint64_t first, uint64_t last,
                                      int *err);
/* The same for a byte range (a ddrescue bad area): every sector it
 * touches, cut at the end of the export.  Returns 0 with *sectors set,
 * 1 if the area starts past the end (nothing done), or -1.
 */
extern int remap_device_mark_pending_bytes (struct remap_device *dev,
                                            uint64_t first_byte,
                                            uint64_t last_byte,
                                            uint64_t *sectors, int *err);

/* Health accounting (health.c). */
extern void remap_health_check_spares (struct remap_device *dev);
extern void remap_health_new_bad_sector (struct remap_device *dev,
                                         uint64_t sector);
extern void remap_health_exhausted (struct remap_device *dev,
                                    uint64_t sector);

/* -D remap.verbose=1 */
extern int remap_debug_verbose;
/* -D remap.selftest_bug=N: for the project's torture self-test only,
 * brings back defect N of issue 10 (1, 4 or 5).
 */
extern int remap_debug_selftest_bug;
#define remap_verbose(fs, ...)                                          \
  do {                                                                  \
    if (remap_debug_verbose)                                            \
      nbdkit_debug ("remap: " fs, ##__VA_ARGS__);                       \
  } while (0)

#endif /* REMAP_DEVICE_H */
