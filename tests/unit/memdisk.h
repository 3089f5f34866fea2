/* nbdkit-remap unit tests: a disk in memory, as a struct remap_io,
 * whose sectors can be made to fail reads or writes, or writeback:
 * like a page cache, a write to such a sector succeeds, and the next
 * flush drops it and fails once with EIO, whoever flushes.  It supports
 * zero (which fails like a write) and trim (which zeroes the range and
 * is recorded), so tests can see where each went.  Its extents are
 * those of a sparse file: a 4 KiB block of zeros is a hole.
 */
#ifndef REMAP_TEST_MEMDISK_H
#define REMAP_TEST_MEMDISK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "errseq.h"
#include "io.h"

#define MEMDISK_MAX_BAD 64

struct memdisk {
  struct remap_io io;
  pthread_mutex_t lock;
  unsigned char *data;
  uint64_t size;
  uint32_t bad_unit;            /* size of a bad "sector" */
  uint64_t bad_write[MEMDISK_MAX_BAD], bad_read[MEMDISK_MAX_BAD];
  uint64_t bad_writeback[MEMDISK_MAX_BAD];
  unsigned nr_bad_write, nr_bad_read, nr_bad_writeback;
  /* What the writes to bad_writeback sectors overwrote, newest last:
   * the next flush puts it back.
   */
  struct memdisk_undo *undo;
  unsigned nr_undo;
  struct remap_errseq errseq;
  /* Called at the start of each flush, before any lock, and so before
   * the flush of a FUA write, which a test may allow by setting
   * io.can_fua (may be NULL).
   */
  void (*before_flush) (struct memdisk *d, void *opaque);
  void *before_flush_opaque;
  bool fail_all_writes;         /* every write fails with EIO */
  int64_t writes_left;          /* if >= 0: writes that may still work */
  /* The first write refused by writes_left stores this many of its
   * first bytes: a write torn by a crash.
   */
  uint32_t torn_bytes;
  uint32_t write_delay_us;      /* each write/zero sleeps this long first */
  /* Flush: while flush_hold, a flush waits (memdisk_release_flushes);
   * with flush_fail it fails with EIO.
   */
  bool flush_hold, flush_fail;
  unsigned flushes_done;
  pthread_cond_t flush_cond;
  unsigned pwrites, preads, flushes, zeroes, trims;  /* calls seen */
  uint64_t last_zero_offset, last_trim_offset;
  uint32_t last_zero_count, last_trim_count;
};

extern struct memdisk *memdisk_new (uint64_t size, uint32_t bad_unit);
extern void memdisk_free (struct memdisk *d);
extern void memdisk_fail_write (struct memdisk *d, uint64_t unit);
extern void memdisk_fail_read (struct memdisk *d, uint64_t unit);
/* Writes to unit succeed until the next flush, which drops them and
 * fails with EIO; the unit is good again after that.
 */
extern void memdisk_fail_writeback (struct memdisk *d, uint64_t unit);
/* After n more successful writes (or zeroes), every write fails with
 * EIO until memdisk_heal.
 */
extern void memdisk_fail_after_writes (struct memdisk *d, int64_t n);
extern void memdisk_heal (struct memdisk *d);
/* Waits until n flushes have begun; lets held flushes go on. */
extern void memdisk_wait_flushes (struct memdisk *d, unsigned n);
extern void memdisk_release_flushes (struct memdisk *d);

#endif
