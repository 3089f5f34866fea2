/* nbdkit-remap: the in-memory remap table.
 *
 * Entries (16 bytes each) sorted by sector, with an index to search
 * them, read without any lock: lookups retry if a writer changed the
 * table meanwhile, and writers are serialized.  In front of that a
 * summary bitmap: an I/O whose sectors have no summary bit set cannot
 * touch an entry and goes straight to the plugin.  That is the fast
 * path every request takes on a healthy disk.
 */
#ifndef REMAP_TABLE_H
#define REMAP_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The state of a table entry (the life of a sector and the rules for
 * changing it are in sector.h).  RESERVED lives only in memory: a
 * spare has been taken for a normal sector but its data is not written
 * yet, so I/O still goes to the original sector (writes wait for the
 * move) and the entry is never saved.  Only normal sectors are ever
 * RESERVED: a pending, lost or remapped sector keeps its saved state
 * while it moves.
 */
enum remap_state {
  REMAP_STATE_REMAPPED = 1,     /* I/O goes to the spare */
  REMAP_STATE_PENDING = 2,      /* unreadable, no spare yet */
  REMAP_STATE_RETIRED = 4,      /* on disk only: a spare that failed */
  REMAP_STATE_RESERVED = 0x100, /* in memory only, see above */
};

#define REMAP_NO_SPARE UINT32_MAX
/* The spare field of a pending sector whose data went with a spare
 * that failed: the original sector holds older data, so reads must
 * fail until a whole-sector write replaces it.
 */
#define REMAP_LOST_DATA (UINT32_MAX - 1)
/* The sector field of a RETIRED entry. */
#define REMAP_NO_SECTOR UINT64_MAX

struct remap_entry {
  uint64_t sector;              /* sector of the export */
  uint32_t spare;               /* spare index, or REMAP_NO_SPARE */
  uint32_t state;               /* enum remap_state */
};

struct remap_table;

extern struct remap_table *remap_table_new (uint64_t nr_sectors);
extern void remap_table_free (struct remap_table *t);

/* Lock-free: false means no entry lies in [first, last] (inclusive).
 * True means one may.
 */
extern bool remap_table_may_touch (const struct remap_table *t,
                                   uint64_t first, uint64_t last);

/* Finds the entry with the lowest sector in [first, last].  Returns
 * true and fills *entry if there is one.
 */
extern bool remap_table_next (struct remap_table *t,
                              uint64_t first, uint64_t last,
                              struct remap_entry *entry);
extern bool remap_table_lookup (struct remap_table *t, uint64_t sector,
                                struct remap_entry *entry);

/* Adds an entry, or replaces the entry for the same sector.
 * Returns -1 (errno ENOMEM or ERANGE) on failure.
 */
extern int remap_table_insert (struct remap_table *t,
                               const struct remap_entry *entry);
/* Builds the table from entries sorted by sector, replacing all it
 * held: the fast way to load a large table at startup.
 */
extern int remap_table_load (struct remap_table *t,
                             const struct remap_entry *entries, size_t n);
extern bool remap_table_remove (struct remap_table *t, uint64_t sector);

/* Number of entries, of all states. */
extern size_t remap_table_count (struct remap_table *t);

/* Copies out the entries whose state is in state_mask (a bitmask of
 * enum remap_state values), sorted by sector.  The caller frees
 * *entries.  Returns the number copied, or -1 on ENOMEM.
 */
extern ssize_t remap_table_snapshot (struct remap_table *t,
                                     uint32_t state_mask,
                                     struct remap_entry **entries);

/* Bytes of memory the table uses, for the scaling report. */
extern size_t remap_table_memory (struct remap_table *t);

#endif /* REMAP_TABLE_H */
