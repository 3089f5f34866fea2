/* nbdkit-remap: the block-I/O interface the core is written against.
 *
 * The filter fills one of these from an nbdkit_next (the plugin), and
 * one from the external spare file; unit tests and remapctl fill them
 * from memory or from libnbd.  The core never sees nbdkit itself.
 */
#ifndef REMAP_IO_H
#define REMAP_IO_H

#include <stdbool.h>
#include <stdint.h>

/* Same values as NBDKIT_FLAG_*, so the glue passes flags unchanged. */
#define REMAP_FLAG_MAY_TRIM  (1 << 0)
#define REMAP_FLAG_FUA       (1 << 1)
#define REMAP_FLAG_FAST_ZERO (1 << 3)

/* Largest single request the core sends. */
#define REMAP_IO_MAX (32 * 1024 * 1024)

struct remap_errseq;

struct remap_io {
  void *opaque;
  /* Each returns 0, or -1 with *err set to an errno value. */
  int (*pread) (void *opaque, void *buf, uint32_t count, uint64_t offset,
                uint32_t flags, int *err);
  int (*pwrite) (void *opaque, const void *buf, uint32_t count,
                 uint64_t offset, uint32_t flags, int *err);
  /* May be NULL: the core writes zeros instead. */
  int (*zero) (void *opaque, uint32_t count, uint64_t offset,
               uint32_t flags, int *err);
  /* May be NULL: trimming is advisory and is then skipped. */
  int (*trim) (void *opaque, uint32_t count, uint64_t offset,
               uint32_t flags, int *err);
  /* May be NULL: caching is advisory and is then skipped. */
  int (*cache) (void *opaque, uint32_t count, uint64_t offset,
                uint32_t flags, int *err);
  /* May be NULL: nothing to flush. */
  int (*flush) (void *opaque, int *err);
  /* Length (*run, at most count) of the span starting at offset that
   * is all known zeros (*zero true) or may hold data (*zero false).
   * May be NULL: everything may hold data.
   */
  int (*extent) (void *opaque, uint32_t count, uint64_t offset,
                 uint64_t *run, bool *zero, int *err);
  /* May be NULL: a store that cannot change size (a disk). */
  int (*truncate) (void *opaque, uint64_t size, int *err);
  bool can_fua;                 /* REMAP_FLAG_FUA may be passed */
  /* May be NULL: the writeback errors of a store shared by several
   * parties (errseq.h); flush then does not report them.
   */
  struct remap_errseq *errseq;
};

/* Whole-buffer helpers that split at REMAP_IO_MAX. */
extern int remap_io_pread_all (const struct remap_io *io, void *buf,
                               uint64_t count, uint64_t offset, int *err);
extern int remap_io_pwrite_all (const struct remap_io *io, const void *buf,
                                uint64_t count, uint64_t offset, int *err);
extern int remap_io_flush (const struct remap_io *io, int *err);
/* A flush whose result is told to the writers it covers (the clients'
 * flush of the store): it also fails for a writeback error that
 * another party heard while their writes were not flushed (errseq.h).
 */
extern int remap_io_flush_reported (const struct remap_io *io, int *err);

/* Sets *is_zero to whether [offset, offset+count) reads as zeros,
 * skipping spans the extent callback reports as zero, so that a
 * sparse image is checked without reading it.
 */
extern int remap_io_is_zero (const struct remap_io *io, uint64_t count,
                             uint64_t offset, bool *is_zero, int *err);

#endif /* REMAP_IO_H */
