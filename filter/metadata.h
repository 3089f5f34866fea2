/* nbdkit-remap: reading, choosing, repairing and writing the metadata
 * copies through a struct remap_io.
 */
#ifndef REMAP_METADATA_H
#define REMAP_METADATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "io.h"
#include "table.h"

/* What was found in a store. */
enum remap_found {
  REMAP_FOUND_VALID,            /* at least one valid copy */
  REMAP_FOUND_NOTHING,          /* no metadata at all: unformatted */
  REMAP_FOUND_DAMAGED,          /* ours, but no copy can be used */
};

#define REMAP_NOT_LOCATED UINT64_MAX

struct remap_copy_report {
  enum remap_decode_status status;
  uint64_t offset;              /* of its header, or REMAP_NOT_LOCATED */
  uint32_t location;            /* home or relocation slot + 1 */
  uint64_t generation;          /* when status is OK */
};

struct remap_load_result {
  enum remap_found found;
  struct remap_header header;   /* of the newest valid copy */
  struct remap_entry *entries;  /* its entries; caller frees */
  struct remap_copy_report copy[REMAP_COPIES];
  bool needs_repair;            /* some copy invalid or older */
};

/* Looks for metadata in a store of store_size bytes.  sector_size is
 * the expected sector size, or 0 to try every size.  For internal
 * regions, spare_count (if non-zero) locates copy A when header B is
 * unreadable.  Each copy is looked for at its home and in every
 * relocation slot; the newest instance of each counts.
 */
extern void remap_metadata_load (const struct remap_io *store,
                                 uint64_t store_size, bool internal,
                                 uint32_t sector_size, uint32_t spare_count,
                                 struct remap_load_result *result);

/* One line describing each copy, for error messages and tools. */
extern void remap_metadata_describe (const struct remap_load_result *r,
                                     char *buf, size_t len);

/* The writer's state: where the copies are and what is on them. */
struct remap_metadata {
  struct remap_geometry geo;
  const struct remap_io *store;
  uint64_t generation;          /* of the newest copy written */
  bool copy_valid[REMAP_COPIES];
  uint32_t location[REMAP_COPIES];
  uint64_t counters[REMAP_NR_COUNTERS];
  /* Takes or gives back the spares of a relocation slot; NULL (as in
   * the tools) means a copy that fails a write is not moved.
   */
  int (*take_run) (void *opaque, uint32_t first, uint32_t count);
  void (*release_run) (void *opaque, uint32_t first, uint32_t count);
  void *run_opaque;
  uint32_t failed_slots;        /* bit k: slot k failed a write */
  /* Bit i: the last write moved copy i to a slot because it was the
   * only valid copy, not because its place failed.
   */
  uint32_t moved_sole;
  /* Asked before each plugin call of a write; may be NULL.  An update
   * stopped between calls leaves every copy valid (old or new).
   */
  bool (*abort_fn) (void *opaque);
  void *abort_opaque;
};

/* Takes over where a load found the copies and what they hold (not
 * the store or the callbacks).
 */
extern void remap_metadata_adopt (struct remap_metadata *md,
                                  const struct remap_load_result *lr);

/* Writes all copies with generation+1: flush the store (so spare data
 * is durable before anything points at it), then each copy followed
 * by a flush, invalid copies first so a valid one always survives a
 * crash.  A copy that fails with an I/O error moves to a free
 * relocation slot if take_run is set (md->location changes).  The
 * only valid copy left is never written over in place: it goes to a
 * free slot, or stays as it is and the write fails (EIO).
 * Succeeds if at least one copy was written; *degraded says whether
 * any could not be.
 */
extern int remap_metadata_write (struct remap_metadata *md,
                                 const struct remap_entry *entries,
                                 size_t n, bool *degraded, int *err);

/* Writes a fresh empty table (generation 1) with a new identity. */
extern int remap_metadata_format (struct remap_metadata *md, int *err);

#endif /* REMAP_METADATA_H */
