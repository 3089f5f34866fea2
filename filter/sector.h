/* nbdkit-remap: the life of one sector, in one place.  Internal to
 * the core.
 *
 * States (the table entry of the sector, see table.h):
 *
 *   normal    no entry: I/O goes to the origin
 *   reserved  a normal sector being moved: a spare is taken, its data
 *             is not written yet; in memory only, I/O still goes to
 *             the origin, and writes to the unit wait for the move
 *   remapped  I/O goes to the spare
 *   pending   unreadable on the origin, no spare yet
 *   lost      pending, and the data went with a spare that failed:
 *             reads fail even if the origin reads (it holds older data)
 *   retired   (a spare, not a sector) failed once, never used again
 *
 *   normal   -> reserved  remap_sector_reserve
 *   reserved -> normal    remap_sector_unreserve (move failed)
 *   reserved -> pending   remap_sector_unreserve (move failed, unreadable)
 *   normal   -> pending   remap_sector_mark_pending
 *   reserved, pending, lost, remapped -> remapped
 *                         remap_sector_remapped (new data on a new spare)
 *   pending, lost -> normal  remap_sector_recovered (rewritten in place)
 *   remapped -> lost      remap_sector_lost (its spare cannot be read)
 *   remapped -> normal    remap_sector_unmapped, then
 *                         remap_sector_release_spare once durable
 *
 * A pending, lost or remapped sector being moved keeps its entry until
 * the new spare holds the data: a table saved meanwhile still says what
 * the sector was, so a crash never brings back older data.
 *
 * Exclusion: every change of a sector's state and every write that
 * depends on it happen under the sector's unit lock (striped).  Writes
 * to normal sectors take no lock: they run in a write window, and
 * remap_sector_reserve waits for the windows open when it set the
 * entry, so an origin write that started before the move is in the
 * origin before the move reads it.  A pending mark is set without that
 * wait (by a read), so whoever reads a pending sector's origin to merge
 * a partial write into it waits for the windows first.
 */
#ifndef REMAP_SECTOR_H
#define REMAP_SECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "device.h"

/* Unit locks: never hold two, never wait for the metadata sync while
 * holding one.
 */
extern void remap_unit_lock (struct remap_device *dev, uint64_t sector);
extern void remap_unit_unlock (struct remap_device *dev, uint64_t sector);

/* Windows (counters.c), to wait for requests in flight without
 * making them take a lock.  A write window: opened before a write to
 * normal sectors looks at the table, closed once the origin has the
 * write; nothing blocks inside one but that origin write.  A walk
 * window: around a request's walk over entries (datapath.c), from its
 * lookups to its last span; it may block.
 */
extern struct remap_counter_slot *remap_window_open (struct remap_device *dev,
                                                     enum remap_window_kind,
                                                     unsigned *side);
/* A write request's counters and its write window, one slot lookup. */
extern struct remap_counter_slot *
remap_count_write_open (struct remap_device *dev, uint64_t n,
                        unsigned *side);

static inline void
remap_window_close (struct remap_device *dev,
                    struct remap_counter_slot *slot,
                    enum remap_window_kind kind, unsigned side)
{
  if (slot)
    __atomic_store_n (&slot->window[kind], slot->window[kind] + 1,
                      __ATOMIC_RELEASE);
  else
    __atomic_fetch_sub (&dev->windows_unslotted[kind][side], 1,
                        __ATOMIC_RELEASE);
}

/* Waits until every window of this kind open now is closed.  Never
 * wait for walk windows holding a unit lock (a walk may wait for it).
 */
extern void remap_windows_drain (struct remap_device *dev,
                                 enum remap_window_kind kind);

/* normal -> reserved.  Caller holds the unit lock.  Before: nothing.
 * Takes a spare (*spare), sets the RESERVED entry, then waits for the
 * write windows, so that the origin holds every write acknowledged or
 * in flight to this sector: from now on writes to it take the unit
 * lock.  Fails with ENOSPC (no spare) or ENOMEM.
 */
extern int remap_sector_reserve (struct remap_device *dev, uint64_t sector,
                                 uint32_t *spare, int *err);
/* reserved -> normal, or -> pending with make_pending.  Caller holds
 * the unit lock.  Gives the spare back (if not REMAP_NO_SPARE).  Wakes the sync thread if the
 * sector became pending.
 */
extern void remap_sector_unreserve (struct remap_device *dev,
                                    uint64_t sector, uint32_t spare,
                                    bool make_pending);
/* Takes a spare for a sector that keeps its entry meanwhile (pending,
 * lost, remapped), or gives it back: no change of state.
 */
extern int remap_sector_take_spare (struct remap_device *dev,
                                    uint64_t sector, uint32_t *spare,
                                    int *err);
extern void remap_sector_give_back (struct remap_device *dev,
                                    uint32_t spare);
/* A spare failed a write or read: retired for good.  Wakes the sync
 * thread (the retired list is saved).
 */
extern void remap_spare_retired (struct remap_device *dev, uint32_t spare,
                                 uint64_t sector);

/* prev -> remapped to spare.  Caller holds the unit lock; prev is the
 * entry before the move (state 0 for a reserved sector).  Before: the
 * spare holds the sector's whole data.  A previous spare is retired, a
 * pending mark cleared.  Returns the sync generation that the caller
 * must wait for (after dropping the unit lock) before acknowledging.
 */
extern uint64_t remap_sector_remapped (struct remap_device *dev,
                                       uint64_t sector, uint32_t spare,
                                       const struct remap_entry *prev);

/* normal -> pending, only if the sector has no entry.  Needs no unit
 * lock (a read may find a sector bad at any time).  Before: nothing (a
 * pending mark only says "bad"; nobody waits for it to be durable).
 * Wakes the sync thread.  Returns true if the mark was added.
 */
extern bool remap_sector_mark_pending (struct remap_device *dev,
                                       uint64_t sector);

/* remapped (to e->spare) -> lost.  Before: nothing.  Retires the spare
 * and wakes the sync thread; reads of the sector fail from now on.
 * Does nothing if the entry changed meanwhile.
 */
extern void remap_sector_lost (struct remap_device *dev,
                               const struct remap_entry *e);

/* pending or lost -> normal.  Caller holds the unit lock.  Before: the
 * origin holds the new data, read back.  Wakes the sync thread; returns
 * the generation to wait for (0: nothing changed).
 */
extern uint64_t remap_sector_recovered (struct remap_device *dev,
                                    uint64_t sector);

/* remapped -> normal.  Caller holds the unit lock.  Before: the origin
 * holds the spare's data, flushed and read back.  Returns the sync
 * generation to wait for; then remap_sector_release_spare.
 */
extern uint64_t remap_sector_unmapped (struct remap_device *dev,
                                       const struct remap_entry *e);
/* Gives an unmapped sector's spare back to the pool.  Before: the
 * table without the entry is durable (else a crash could show this
 * sector another sector's data).  Waits until no request that saw the
 * entry still uses the spare: the walks in flight now.
 */
extern void remap_sector_release_spare (struct remap_device *dev,
                                        uint32_t spare);

#endif /* REMAP_SECTOR_H */
