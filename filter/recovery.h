/* nbdkit-remap: what the data path does when the media fails, and the
 * sector arithmetic it shares with datapath.c.  Internal to the core.
 *
 * recovery.c: failed reads and writes of the origin, pending sectors;
 * spareio.c: I/O on spares, and moving a sector whose spare failed;
 * manage.c: the control socket's remap, unmap and mark-pending;
 * sector.c: the state changes all of them make (see sector.h).
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

/* The part of [offset, end) that lies in offset's sector. */
static inline uint32_t
remap_sector_piece (const struct remap_device *dev, uint64_t offset,
                    uint64_t end, uint64_t *sector)
{
  uint64_t sector_end;

  *sector = offset / dev->geo.sector_size;
  sector_end = remap_sector_start (dev, *sector) + dev->geo.sector_size;
  return (sector_end < end ? sector_end : end) - offset;
}

/* Every loop that goes to the plugin again asks first whether the
 * server is quitting (sets *err to ESHUTDOWN then).
 */
extern bool remap_give_up (struct remap_device *dev, int *err);
/* Reads with up to opt.read_retries extra tries after EIO. */
extern int remap_read_with_retries (struct remap_device *dev,
                                    const struct remap_io *io, void *buf,
                                    uint32_t len, uint64_t offset, int *err);
/* A sector did not read: pending (if it has no entry), logged. */
extern void remap_note_unreadable (struct remap_device *dev, uint64_t sector);

/* Where the old bytes around a partial write come from when a sector
 * is moved to a spare.
 */
enum remap_fill { REMAP_FILL_FROM_ORIGIN, REMAP_FILL_ZEROS };

/* Moves a normal or pending sector to a spare, with piece (NULL:
 * zeros; piece_len 0 with REMAP_FILL_FROM_ORIGIN: a copy of the
 * origin) at piece_offset.  Caller holds the unit lock and looked the
 * entry up under it (prev NULL: none).  Sets *gen to the sync
 * generation to wait for once the unit lock is dropped.
 */
extern int remap_move_locked (struct remap_device *dev,
                              const struct remap_io *origin, uint64_t sector,
                              const struct remap_entry *prev,
                              const void *piece, uint32_t piece_len,
                              uint64_t piece_offset, uint32_t flags,
                              enum remap_fill fill, uint64_t *gen, int *err);

/* Writes piece (inside one sector) under the sector's unit lock, to
 * wherever the sector's state says; a failure moves the sector.  With
 * origin_failed the origin already failed (or did not keep) this
 * piece.  Returns once what it changed in the table is durable.
 */
extern int remap_unit_write (struct remap_device *dev,
                             const struct remap_io *origin, uint64_t sector,
                             const void *piece, uint32_t len,
                             uint64_t offset, uint32_t flags,
                             bool origin_failed, int *err);

/* A read of the origin failed: read sector by sector with retries;
 * good sectors are filled in, bad ones become pending and the call
 * fails with EIO.
 */
extern int remap_recover_read (struct remap_device *dev,
                               const struct remap_io *origin, void *buf,
                               uint32_t len, uint64_t offset, int *err);

/* Writes a run sector by sector, each with remap_unit_write: after a
 * failed write of the run (retry true), or for a run a move began in.
 * buf NULL writes zeros.
 */
extern int remap_write_per_unit (struct remap_device *dev,
                                 const struct remap_io *origin,
                                 const void *buf, uint32_t len,
                                 uint64_t offset, uint32_t flags,
                                 bool retry, int *err);

/* remap-verify: reads back what the origin just wrote and moves the
 * sectors that do not match.
 */
extern int remap_verify_run (struct remap_device *dev,
                             const struct remap_io *origin, const void *buf,
                             uint32_t len, uint64_t offset, uint32_t flags,
                             int *err);

/* spareio.c.  Reads of a remapped sector's spare (no lock: a spare
 * that fails makes the sector lost); writes to it under the unit lock
 * (a spare that fails moves the sector, *gen as for remap_move_locked).
 */
extern int remap_spare_read (struct remap_device *dev,
                             const struct remap_entry *e, void *buf,
                             uint32_t len, uint64_t offset, int *err);
extern int remap_spare_write_locked (struct remap_device *dev,
                                     const struct remap_io *origin,
                                     const struct remap_entry *e,
                                     const void *buf, uint32_t len,
                                     uint64_t offset, uint32_t flags,
                                     uint64_t *gen, int *err);
/* Writes a whole sector to *spare (taken) or, if that fails, to fresh
 * spares, retiring the ones that fail; returns the one that worked.
 * On failure *spare is one still taken, or REMAP_NO_SPARE.
 */
extern int remap_write_to_some_spare (struct remap_device *dev,
                                      uint64_t sector,
                                      const unsigned char *data,
                                      uint32_t flags, uint32_t *spare,
                                      int *err);

/* Reads and writes of a pending sector (writes under the unit lock).
 * A read goes by the entry its walk found (e), not a second lookup:
 * a lost sector moved to a spare in between must not be read from its
 * stale origin.
 */
extern int remap_pending_read (struct remap_device *dev,
                               const struct remap_io *origin,
                               const struct remap_entry *e, void *buf,
                               uint32_t len, uint64_t offset, int *err);
extern int remap_pending_write_locked (struct remap_device *dev,
                                       const struct remap_io *origin,
                                       const struct remap_entry *e,
                                       const void *piece, uint32_t len,
                                       uint64_t offset, uint32_t flags,
                                       uint64_t *gen, int *err);

#endif /* REMAP_RECOVERY_H */
