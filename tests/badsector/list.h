/* nbdkit-badsector-filter: the list file of misbehaving sectors
 * (format in badsector.c), re-read whenever it changes.
 */
#ifndef BADSECTOR_LIST_H
#define BADSECTOR_LIST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum kind {
  KIND_READ,            /* every read fails */
  KIND_WRITE,           /* every write or zero fails */
  KIND_READ_ONCE,       /* next read fails, then the sector heals */
  KIND_WRITE_ONCE,      /* next write or zero fails, then it heals */
  KIND_DROP,            /* writes report success but are discarded */
  KIND_WRITEBACK,       /* writes are cached, and fail at writeback */
};

/* An inclusive range of sectors with one kind of misbehaviour. */
struct range {
  uint64_t first, last;
  enum kind kind;
};

struct list {
  struct range *ranges;         /* sorted by first, then last */
  size_t len;
  uint32_t delay_read_ms, delay_write_ms, delay_writeback_ms;
};

/* Inclusive, in sectors. */
struct span {
  uint64_t first, last;         /* inclusive, in sectors */
};

/* The list in force, and the lock that protects it and the file's
 * state.  Every *_locked function is called with list_lock held.
 */
extern pthread_mutex_t list_lock;
extern struct list list;

/* badsector-file=FILE (made absolute).  Returns 0, or -1 reported. */
extern int list_set_file (const char *value);
extern bool list_has_file (void);
extern void list_unload (void);

/* Brings the list up to date with the file; errors are reported and
 * the previous list stays in force.
 */
extern void refresh_list_locked (void);

/* Should a request touching sectors [s0, s1] fail?  If so, returns
 * true with the lowest offending sector in *sector and uses up any
 * once-only sectors the request touched.
 */
extern bool injected_error_locked (bool is_write, uint64_t s0, uint64_t s1,
                                   uint64_t *sector);

/* The sectors in [s0, s1] covered by ranges whose kind is in kinds
 * (a mask of 1 << KIND_*), clipped, merged and ascending; *spans is
 * to be freed.  Returns -1 on allocation failure (reported).
 */
extern int spans_locked (unsigned kinds, uint64_t s0, uint64_t s1,
                         struct span **spans, size_t *nspans);

#endif /* BADSECTOR_LIST_H */
