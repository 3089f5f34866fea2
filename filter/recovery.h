/* nbdkit-remap: what the data path does when the media fails, and the
 * sector arithmetic it shares with datapath.c.  Internal to the core.
 */
#ifndef REMAP_RECOVERY_H
#define REMAP_RECOVERY_H

#include <stdbool.h>
#include <stdint.h>

#include "device.h"

extern unsigned char remap_zero_sector[REMAP_MAX_SECTOR_SIZE];

static inline void
remap_bump (struct remap_device *dev, enum remap_counter c, uint64_t n)
{
  remap_counter_add (dev, c, n);
}

static inline uint64_t
remap_sector_start (const struct remap_device *dev, uint64_t sector)
{
  return sector * dev->geo.sector_size;
}

/* Bytes of a sector inside the export (the last one may be short). */
static inline uint32_t
remap_sector_len (const struct remap_device *dev, uint64_t sector)
{
  uint64_t left = dev->geo.export_size - remap_sector_start (dev, sector);
  return left < dev->geo.sector_size ? left : dev->geo.sector_size;
}

/* Where byte 'offset' of the export lives on the spare of entry e. */
static inline uint64_t
remap_spare_where (const struct remap_device *dev,
                   const struct remap_entry *e, uint64_t offset)
{
  return dev->geo.spare_offset + (uint64_t) e->spare * dev->geo.sector_size +
    (offset - remap_sector_start (dev, e->sector));
}

/* Where the old bytes around a partial write come from when a sector
 * is moved to a spare.
 */
enum remap_fill { REMAP_FILL_FROM_ORIGIN, REMAP_FILL_ZEROS };

/* The origin failed a write (or its verification) in this sector:
 * move it to a spare.  piece is what the client writes (NULL: zeros)
 * at piece_offset, piece_len bytes, inside the sector.  With wait, the
 * call returns once the new table entry is durable.
 */
extern int remap_recover_write (struct remap_device *dev,
                                const struct remap_io *origin,
                                uint64_t sector, const void *piece,
                                uint32_t piece_len, uint64_t piece_offset,
                                uint32_t flags, enum remap_fill fill,
                                bool wait, int *err);

/* A read of the origin failed: read sector by sector with retries;
 * good sectors are filled in, bad ones become pending and the call
 * fails with EIO.
 */
extern int remap_recover_read (struct remap_device *dev,
                               const struct remap_io *origin, void *buf,
                               uint32_t len, uint64_t offset, int *err);

/* A write of the origin failed: write sector by sector, remapping the
 * sectors that still fail.  buf NULL writes zeros.
 */
extern int remap_recover_write_run (struct remap_device *dev,
                                    const struct remap_io *origin,
                                    const void *buf, uint32_t len,
                                    uint64_t offset, uint32_t flags,
                                    int *err);

/* remap-verify: reads back what the origin just wrote and remaps the
 * sectors that do not match.
 */
extern int remap_verify_run (struct remap_device *dev,
                             const struct remap_io *origin, const void *buf,
                             uint32_t len, uint64_t offset, uint32_t flags,
                             int *err);

/* I/O on the spare of a remapped sector; a spare that fails is retired
 * and the sector moved to another one (writes) or made pending
 * (reads, whose data is then lost).
 */
extern int remap_spare_read (struct remap_device *dev,
                             const struct remap_entry *e, void *buf,
                             uint32_t len, uint64_t offset, int *err);
extern int remap_spare_write (struct remap_device *dev,
                              const struct remap_io *origin,
                              const struct remap_entry *e, const void *buf,
                              uint32_t len, uint64_t offset, uint32_t flags,
                              int *err);

/* Reads and writes of a pending sector. */
extern int remap_pending_read (struct remap_device *dev,
                               const struct remap_io *origin, void *buf,
                               uint32_t len, uint64_t offset, int *err);
extern int remap_pending_write (struct remap_device *dev,
                                const struct remap_io *origin,
                                uint64_t sector, const void *piece,
                                uint32_t len, uint64_t offset,
                                uint32_t flags, int *err);

#endif /* REMAP_RECOVERY_H */
