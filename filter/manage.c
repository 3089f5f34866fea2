/* nbdkit-remap: the sector operations of the control socket and of
 * remapctl: remap on request, unmap, mark pending (see device.h).
 * Each runs under the sector's unit lock like a write would, so a
 * client's write to the same sector waits instead of being lost.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "recovery.h"
#include "sector.h"

int
remap_device_mark_pending (struct remap_device *dev, uint64_t first,
                           uint64_t last, int *err)
{
  if (last >= dev->geo.data_sectors || first > last) {
    *err = ERANGE;
    return -1;
  }
  for (uint64_t s = first; s <= last; s++)
    if (remap_sector_mark_pending (dev, s)) {
      remap_verbose ("sector %" PRIu64 " is unreadable: pending", s);
      remap_health_new_bad_sector (dev, s);
    }
  return 0;
}

int
remap_device_mark_pending_bytes (struct remap_device *dev,
                                 uint64_t first_byte, uint64_t last_byte,
                                 uint64_t *sectors, int *err)
{
  const uint64_t first = first_byte / dev->geo.sector_size;
  uint64_t last = last_byte / dev->geo.sector_size;

  if (first >= dev->geo.data_sectors)
    return 1;
  if (last >= dev->geo.data_sectors)
    last = dev->geo.data_sectors - 1;
  if (remap_device_mark_pending (dev, first, last, err) == -1)
    return -1;
  *sectors = last - first + 1;
  return 0;
}

int
remap_device_add (struct remap_device *dev, const struct remap_io *origin,
                  uint64_t first, uint64_t last, int *err)
{
  if (last >= dev->geo.data_sectors || first > last) {
    *err = ERANGE;
    return -1;
  }
  for (uint64_t s = first; s <= last; s++) {
    struct remap_entry e;
    uint64_t gen;
    bool had;
    int r = 0;

    if (remap_give_up (dev, err))
      return -1;
    remap_unit_lock (dev, s);
    had = remap_table_lookup (dev->table, s, &e);
    /* A remapped sector stays where it is; a lost one has nothing
     * worth copying (its origin is older than its last data).
     */
    if (!had || (e.state == REMAP_STATE_PENDING &&
                 e.spare != REMAP_LOST_DATA))
      r = remap_move_locked (dev, origin, s, had ? &e : NULL, NULL, 0,
                             remap_sector_start (dev, s), 0,
                             REMAP_FILL_FROM_ORIGIN, &gen, err);
    remap_unit_unlock (dev, s);
    if (r == -1)
      return -1;
  }
  return 0;
}

int
remap_device_unmap (struct remap_device *dev, const struct remap_io *origin,
                    uint64_t sector, int *err)
{
  const uint64_t sstart = remap_sector_start (dev, sector);
  const uint32_t slen = remap_sector_len (dev, sector);
  CLEANUP_FREE unsigned char *data = malloc (slen);
  CLEANUP_FREE unsigned char *check = malloc (slen);
  struct remap_entry e;
  uint64_t gen;

  if (data == NULL || check == NULL) {
    *err = ENOMEM;
    return -1;
  }
  /* Only this unit waits while its data goes back to the origin. */
  remap_unit_lock (dev, sector);
  if (!remap_table_lookup (dev->table, sector, &e) ||
      e.state != REMAP_STATE_REMAPPED) {
    remap_unit_unlock (dev, sector);
    *err = ENOENT;
    return -1;
  }
  if (dev->store->pread (dev->store->opaque, data, slen,
                         remap_spare_where (dev, &e, sstart), 0, err) == -1 ||
      origin->pwrite (origin->opaque, data, slen, sstart, 0, err) == -1 ||
      remap_io_flush (origin, err) == -1 ||
      origin->pread (origin->opaque, check, slen, sstart, 0, err) == -1 ||
      memcmp (data, check, slen) != 0) {
    remap_unit_unlock (dev, sector);
    remap_verbose ("sector %" PRIu64 " does not keep its data yet: "
                   "stays remapped", sector);
    *err = EIO;
    return -1;
  }
  gen = remap_sector_unmapped (dev, &e);
  remap_unit_unlock (dev, sector);

  if (remap_sync_wait (dev->sync, gen) == -1) {
    *err = errno;
    return -1;
  }
  remap_sector_release_spare (dev, e.spare);
  remap_verbose ("sector %" PRIu64 " unmapped from spare %" PRIu32,
                 sector, e.spare);
  return 0;
}
