/* nbdkit-remap: the transitions of a sector's state (see sector.h).
 *
 * Every change of a table entry goes through a function here, under
 * remap_lock (which serializes table writers and the spare pool), so
 * the rules for what must be durable before and who is woken after
 * are written once.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>

#include <nbdkit-filter.h>

#include "recovery.h"
#include "sector.h"

/* Hashed, so that clients writing the same offsets of regions a power
 * of two apart do not queue on one lock.
 */
static pthread_mutex_t *
unit_lock (struct remap_device *dev, uint64_t sector)
{
  return &dev->unit_locks[(sector * UINT64_C (0x9E3779B97F4A7C15)) >>
                          (64 - REMAP_UNIT_STRIPES_LOG2)];
}

void
remap_unit_lock (struct remap_device *dev, uint64_t sector)
{
  pthread_mutex_lock (unit_lock (dev, sector));
}

void
remap_unit_unlock (struct remap_device *dev, uint64_t sector)
{
  pthread_mutex_unlock (unit_lock (dev, sector));
}

/* Caller holds remap_lock. */
static int
take_spare_locked (struct remap_device *dev, uint64_t sector,
                   uint32_t *spare, int *err)
{
  if (remap_spares_alloc (dev->spares, spare) == -1) {
    remap_health_exhausted (dev, sector);
    *err = ENOSPC;
    return -1;
  }
  return 0;
}

int
remap_sector_take_spare (struct remap_device *dev, uint64_t sector,
                         uint32_t *spare, int *err)
{
  int r;

  pthread_mutex_lock (&dev->remap_lock);
  r = take_spare_locked (dev, sector, spare, err);
  pthread_mutex_unlock (&dev->remap_lock);
  return r;
}

void
remap_sector_give_back (struct remap_device *dev, uint32_t spare)
{
  if (spare == REMAP_NO_SPARE)
    return;
  pthread_mutex_lock (&dev->remap_lock);
  remap_spares_release (dev->spares, spare);
  pthread_mutex_unlock (&dev->remap_lock);
}

void
remap_spare_retired (struct remap_device *dev, uint32_t spare,
                     uint64_t sector)
{
  pthread_mutex_lock (&dev->remap_lock);
  remap_spares_retire (dev->spares, spare);
  pthread_mutex_unlock (&dev->remap_lock);
  remap_sync_mark_changed (dev->sync);
  remap_verbose ("spare %" PRIu32 " (sector %" PRIu64 ") failed: retired",
                 spare, sector);
}

int
remap_sector_reserve (struct remap_device *dev, uint64_t sector,
                      uint32_t *spare, int *err)
{
  struct remap_entry e = { .sector = sector,
                           .state = REMAP_STATE_RESERVED };

  pthread_mutex_lock (&dev->remap_lock);
  if (take_spare_locked (dev, sector, &e.spare, err) == -1) {
    pthread_mutex_unlock (&dev->remap_lock);
    return -1;
  }
  if (remap_table_insert (dev->table, &e) == -1) {
    remap_spares_release (dev->spares, e.spare);
    pthread_mutex_unlock (&dev->remap_lock);
    *err = ENOMEM;
    return -1;
  }
  pthread_mutex_unlock (&dev->remap_lock);
  *spare = e.spare;
  /* The entry (and its summary bit) is visible now; a writer that
   * checked the table before is inside its window.
   */
  remap_windows_drain (dev, REMAP_WINDOW_WRITE);
  return 0;
}

/* Pending entries share the table's slot with the remaps, so they are
 * capped at what is left over once every spare is in use.  Caller
 * holds remap_lock.
 */
static bool
add_pending_locked (struct remap_device *dev, uint64_t sector)
{
  struct remap_entry e = { .sector = sector, .spare = REMAP_NO_SPARE,
                           .state = REMAP_STATE_PENDING };
  uint64_t limit = dev->geo.entry_capacity - dev->geo.spare_count;

  if (__atomic_load_n (&dev->pending_now, __ATOMIC_RELAXED) >= limit) {
    if (!dev->pending_full_logged)
      nbdkit_error ("remap: %" PRIu64 " sectors are pending, as many as the "
                    "table holds: sector %" PRIu64 " and later unreadable "
                    "sectors are not recorded (reads of them still fail)",
                    limit, sector);
    dev->pending_full_logged = true;
    return false;
  }
  if (remap_table_insert (dev->table, &e) == -1)
    return false;
  __atomic_fetch_add (&dev->pending_now, 1, __ATOMIC_RELAXED);
  return true;
}

void
remap_sector_unreserve (struct remap_device *dev, uint64_t sector,
                        uint32_t spare, bool make_pending)
{
  bool pending = false;

  pthread_mutex_lock (&dev->remap_lock);
  if (spare != REMAP_NO_SPARE)
    remap_spares_release (dev->spares, spare);
  remap_table_remove (dev->table, sector);
  if (make_pending)
    pending = add_pending_locked (dev, sector);
  pthread_mutex_unlock (&dev->remap_lock);
  if (pending)
    remap_sync_mark_changed (dev->sync);
}

uint64_t
remap_sector_remapped (struct remap_device *dev, uint64_t sector,
                       uint32_t spare, const struct remap_entry *prev)
{
  struct remap_entry e = { .sector = sector, .spare = spare,
                           .state = REMAP_STATE_REMAPPED };

  pthread_mutex_lock (&dev->remap_lock);
  remap_table_insert (dev->table, &e); /* replaces: cannot fail */
  if (prev->state == REMAP_STATE_PENDING)
    __atomic_fetch_sub (&dev->pending_now, 1, __ATOMIC_RELAXED);
  else if (prev->state == REMAP_STATE_REMAPPED)
    remap_spares_retire (dev->spares, prev->spare);
  pthread_mutex_unlock (&dev->remap_lock);
  return remap_sync_mark_changed (dev->sync);
}

bool
remap_sector_mark_pending (struct remap_device *dev, uint64_t sector)
{
  struct remap_entry e;
  bool added = false;

  pthread_mutex_lock (&dev->remap_lock);
  if (!remap_table_lookup (dev->table, sector, &e))
    added = add_pending_locked (dev, sector);
  pthread_mutex_unlock (&dev->remap_lock);
  if (added)
    remap_sync_mark_changed (dev->sync);
  return added;
}

void
remap_sector_lost (struct remap_device *dev, const struct remap_entry *e)
{
  struct remap_entry now;
  bool lost = false;

  pthread_mutex_lock (&dev->remap_lock);
  if (remap_table_lookup (dev->table, e->sector, &now) &&
      now.state == REMAP_STATE_REMAPPED && now.spare == e->spare) {
    /* The entry stays (no table growth, so no cap), marked so that
     * the stale original is never served in its place.
     */
    struct remap_entry mark = { .sector = e->sector,
                                .spare = REMAP_LOST_DATA,
                                .state = REMAP_STATE_PENDING };
    remap_spares_retire (dev->spares, e->spare);
    remap_table_insert (dev->table, &mark);
    __atomic_fetch_add (&dev->pending_now, 1, __ATOMIC_RELAXED);
    lost = true;
  }
  pthread_mutex_unlock (&dev->remap_lock);
  if (lost) {
    remap_sync_mark_changed (dev->sync);
    remap_verbose ("spare %" PRIu32 " (sector %" PRIu64 ") failed: retired",
                   e->spare, e->sector);
  }
}

uint64_t
remap_sector_recovered (struct remap_device *dev, uint64_t sector)
{
  struct remap_entry e;
  bool cleared = false;
  uint64_t gen = 0;

  pthread_mutex_lock (&dev->remap_lock);
  if (remap_table_lookup (dev->table, sector, &e) &&
      e.state == REMAP_STATE_PENDING) {
    remap_table_remove (dev->table, sector);
    __atomic_fetch_sub (&dev->pending_now, 1, __ATOMIC_RELAXED);
    cleared = true;
  }
  pthread_mutex_unlock (&dev->remap_lock);
  if (cleared) {
    remap_bump (dev, REMAP_COUNTER_RECOVERED, 1);
    gen = remap_sync_mark_changed (dev->sync);
    remap_verbose ("pending sector %" PRIu64 " rewrote and verified: "
                   "recovered", sector);
  }
  return gen;
}

uint64_t
remap_sector_unmapped (struct remap_device *dev, const struct remap_entry *e)
{
  pthread_mutex_lock (&dev->remap_lock);
  remap_table_remove (dev->table, e->sector);
  pthread_mutex_unlock (&dev->remap_lock);
  return remap_sync_mark_changed (dev->sync);
}

void
remap_sector_release_spare (struct remap_device *dev, uint32_t spare)
{
  /* A walk that may still use the spare is in its window now; new
   * ones no longer find the entry.  Unlike a lock, a stream of new
   * walks cannot starve this wait.
   */
  remap_windows_drain (dev, REMAP_WINDOW_WALK);
  remap_sector_give_back (dev, spare);
}
