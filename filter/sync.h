/* nbdkit-remap: the background metadata-sync thread and the waiters
 * that depend on it.
 *
 * Who sets what, and who wakes whom (keep this true; dm-remap lost
 * weeks to teardown deadlocks by breaking it):
 *
 *  - A writer that changes the table calls remap_sync_mark_changed,
 *    which bumps 'changed' and broadcasts.  It may then wait in
 *    remap_sync_wait for that value to become durable.
 *  - The thread sleeps until 'changed' differs from what it last
 *    attempted, or the cancel flag is set.  It snapshots the table,
 *    writes every copy, then records the result ('durable', or a
 *    failure count) and broadcasts.
 *  - All sleepers, the thread included, wait on the one condition
 *    variable and re-check the cancel flag after every wake-up.
 *  - remap_sync_stop sets the cancel flag, broadcasts and joins.
 *    After that no one waits: remap_sync_wait returns ESHUTDOWN.
 *  - Waiters also give up when the abort function (nbdkit quitting)
 *    says so: nbdkit finishes every request before it lets the filter
 *    clean up, so a request must not wait for a slow write to finish.
 *  - Without a running thread (before start, or in tools and unit
 *    tests) remap_sync_wait writes the table itself, so nothing ever
 *    waits for a thread that does not exist.
 */
#ifndef REMAP_SYNC_H
#define REMAP_SYNC_H

#include <stdbool.h>
#include <stdint.h>

/* Writes the whole table durably.  Returns 0, or -1 with errno set. */
typedef int (*remap_sync_write_fn) (void *opaque);
/* True when there is no point going on: the server is quitting. */
typedef bool (*remap_abort_fn) (void *opaque);

struct remap_sync;

extern struct remap_sync *remap_sync_new (remap_sync_write_fn write,
                                          void *opaque);
extern void remap_sync_free (struct remap_sync *s);

extern int remap_sync_start (struct remap_sync *s);
extern void remap_sync_stop (struct remap_sync *s);

/* Records that the table changed; returns the value to wait for. */
extern uint64_t remap_sync_mark_changed (struct remap_sync *s);
/* The value covering every change made so far. */
extern uint64_t remap_sync_current (struct remap_sync *s);
extern bool remap_sync_is_dirty (struct remap_sync *s);

/* Waits until change 'gen' is durable.  Returns 0, or -1 with errno:
 * EIO (or the write's own errno) if the sync failed, ESHUTDOWN if the
 * server is stopping.
 */
extern int remap_sync_wait (struct remap_sync *s, uint64_t gen);

/* Lets waiters give up (ESHUTDOWN) when fn says so. */
extern void remap_sync_set_abort (struct remap_sync *s, remap_abort_fn fn,
                                  void *opaque);

/* Writes the table now, in the caller's thread, if anything changed.
 * Used by shutdown after the thread has been joined.
 */
extern int remap_sync_now (struct remap_sync *s);

struct remap_sync_stats {
  uint64_t syncs;               /* successful table writes */
  uint64_t failures;
  uint64_t last_duration_ns;    /* of the last good write */
  uint64_t last_attempt_ns;     /* of the last write, good or not */
  bool last_failed;             /* the last write failed */
  uint64_t last_sync_time;      /* CLOCK_REALTIME seconds */
};
extern void remap_sync_get_stats (struct remap_sync *s,
                                  struct remap_sync_stats *stats);

#endif /* REMAP_SYNC_H */
