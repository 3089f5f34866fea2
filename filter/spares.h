/* nbdkit-remap: the spare-sector allocator.
 *
 * Which spares are in use is never stored as a counter: at load time
 * it is rebuilt from the persisted table (remap_spares_mark_used), so
 * a crash can at worst leave a taken spare free again, never hand out
 * one that a saved entry points to.
 */
#ifndef REMAP_SPARES_H
#define REMAP_SPARES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct remap_spares;

extern struct remap_spares *remap_spares_new (uint32_t count);
extern void remap_spares_free (struct remap_spares *s);

/* Marks a spare used while loading.  Returns -1 if it already was,
 * which means the table points two sectors at one spare.
 */
extern int remap_spares_mark_used (struct remap_spares *s, uint32_t spare);

/* Takes the lowest free spare.  Returns -1 (errno ENOSPC) when none
 * is left.
 */
extern int remap_spares_alloc (struct remap_spares *s, uint32_t *spare);
/* Gives back a spare that was taken but never made durable. */
extern void remap_spares_release (struct remap_spares *s, uint32_t spare);

/* Takes the run [first, first+count) for a metadata copy moved off
 * failing sectors, all of it or nothing: returns -1 (errno EBUSY) if
 * any of it is taken.  The run counts as used.
 */
extern int remap_spares_take_run (struct remap_spares *s, uint32_t first,
                                  uint32_t count);
extern void remap_spares_release_run (struct remap_spares *s,
                                      uint32_t first, uint32_t count);

/* Retires a spare that failed: it stays taken forever and is saved in
 * the table so that it is never handed out again, even after restart.
 */
extern void remap_spares_retire (struct remap_spares *s, uint32_t spare);
/* Marks a spare retired while loading.  Returns -1 if it was taken. */
extern int remap_spares_mark_retired (struct remap_spares *s, uint32_t spare);
/* Copies out the retired spares in ascending order; caller frees.
 * Returns the count, or -1 on ENOMEM.
 */
extern ssize_t remap_spares_retired_list (struct remap_spares *s,
                                          uint32_t **list);
extern uint32_t remap_spares_retired (struct remap_spares *s);

/* Spares holding data (taken and not retired). */
extern uint32_t remap_spares_used (struct remap_spares *s);
extern uint32_t remap_spares_total (const struct remap_spares *s);

#endif /* REMAP_SPARES_H */
