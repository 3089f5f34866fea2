/* nbdkit-remap unit tests: an external-mode device over two memdisks,
 * the origin and the spare file (512-byte sectors, 16 spares), for
 * the tests that drive the data path directly.
 */
#ifndef REMAP_TEST_EXTDEV_H
#define REMAP_TEST_EXTDEV_H

#include <stdint.h>

#include "device.h"
#include "memdisk.h"

#define EXTDEV_SS 512
#define EXTDEV_DISK_SIZE (1024 * 1024)
#define EXTDEV_SPARES 16

struct extdev {
  struct memdisk *disk;         /* the origin */
  struct memdisk *store;        /* the spare file */
  struct remap_options opt;
  struct remap_device *dev;
};

/* Formats a new table; fails the test if it cannot. */
extern void extdev_open (struct extdev *x);
/* Stops the device's threads and frees everything. */
extern void extdev_free (struct extdev *x);
/* Writes one whole sector of byte through the data path. */
extern int extdev_write_sector (struct extdev *x, uint64_t sector,
                                unsigned char byte, uint32_t flags,
                                int *err);

#endif /* REMAP_TEST_EXTDEV_H */
