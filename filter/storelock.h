/* nbdkit-remap: taking the store lock (lock.h) for the server, from
 * what the plugin was given (params.c).
 */
#ifndef REMAP_STORELOCK_H
#define REMAP_STORELOCK_H

#include <stdbool.h>

/* Before anything is read: exclusively, since read-only mode is known
 * only after the fork.  -1 after nbdkit_error.
 */
extern int remap_store_lock_take (void);
/* After the fork, for a read-only server: shared from now on, so
 * read-only servers and remapctl's readers may share the store.
 */
extern int remap_store_lock_share (void);
extern void remap_store_lock_release (void);

#endif /* REMAP_STORELOCK_H */
