/* nbdkit-remap unit tests: a disk in memory, as a struct remap_io,
 * whose sectors can be made to fail reads or writes.
 */
#ifndef REMAP_TEST_MEMDISK_H
#define REMAP_TEST_MEMDISK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "io.h"

#define MEMDISK_MAX_BAD 64

struct memdisk {
  struct remap_io io;
  pthread_mutex_t lock;
  unsigned char *data;
  uint64_t size;
  uint32_t bad_unit;            /* size of a bad "sector" */
  uint64_t bad_write[MEMDISK_MAX_BAD], bad_read[MEMDISK_MAX_BAD];
  unsigned nr_bad_write, nr_bad_read;
  bool fail_all_writes;         /* every write fails with EIO */
  unsigned pwrites, preads, flushes;  /* calls seen */
};

extern struct memdisk *memdisk_new (uint64_t size, uint32_t bad_unit);
extern void memdisk_free (struct memdisk *d);
extern void memdisk_fail_write (struct memdisk *d, uint64_t unit);
extern void memdisk_fail_read (struct memdisk *d, uint64_t unit);
extern void memdisk_heal (struct memdisk *d);

#endif
