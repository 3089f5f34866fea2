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
  REMAP_COUNTER_READ_ERRORS,
  REMAP_COUNTER_WRITE_ERRORS,
  REMAP_COUNTER_REMAPS,
  REMAP_NR_COUNTERS_USED
};

struct remap_options {
  bool internal;                /* region at the end of the plugin disk */
  uint32_t sector_size;         /* 0: default, or what is on disk */
  uint64_t spare_bytes;         /* 0: use spare_percent */
  uint32_t spare_percent_x100;  /* 0: default */
  bool format;                  /* overwrite whatever is there */
  bool readonly;
  const char *store_name;       /* for messages: file name or "the disk" */
};

#define REMAP_DEFAULT_SECTOR_SIZE 4096
#define REMAP_DEFAULT_SPARE_PERCENT_X100 100  /* 1% */
#define REMAP_DEFAULT_MIN_SPARES 64

struct remap_device {
  struct remap_geometry geo;
  struct remap_table *table;
  struct remap_spares *spares;
  struct remap_sync *sync;
  struct remap_metadata md;
  const struct remap_io *store;  /* spares and metadata */
  bool store_dirty;             /* spare written since the last flush */

  /* Creating a remap: the RESERVED entry and its waiters. */
  pthread_mutex_t remap_lock;
  pthread_cond_t remap_cond;
  bool stopping;

  uint64_t counters[REMAP_NR_COUNTERS];  /* updated atomically */
};

/* Finds, checks or formats the metadata in store (store_size bytes;
 * for the internal region store is the plugin itself and store_size
 * its size) and builds the in-memory state.  Reports problems with
 * nbdkit_error.  Does not start the sync thread.
 */
extern struct remap_device *remap_device_open (const struct remap_options *opt,
                                               const struct remap_io *store,
                                               uint64_t store_size,
                                               uint64_t disk_size);
extern int remap_device_start (struct remap_device *dev);
/* Stops the sync thread (flag, wake, join), releases every waiter and
 * writes the table one last time if it changed.
 */
extern void remap_device_stop (struct remap_device *dev);
extern void remap_device_free (struct remap_device *dev);

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
 * order with entry NULL for spans with no remapped sector, and with
 * the entry for each piece of a remapped sector.  span_fn returns 0 to
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

#endif /* REMAP_DEVICE_H */
