/* nbdkit-remap: taking the store lock (lock.h) for the server, from
 * what the plugin was given (params.c).
 */
#ifndef REMAP_STORELOCK_H
#define REMAP_STORELOCK_H

#include <stdbool.h>

/* Before anything is read: exclusively, or shared where a read-only
 * server holds it shared, since read-only mode is known only after
 * the fork.  -1 after nbdkit_error.
 */
extern int remap_store_lock_take (void);
/* After the fork, once read-only mode is known: a read-only server
 * shares its locks from now on, so that read-only servers can share
 * a store; a server that can write needs every lock exclusive, and
 * fails if a read-only server shares one.  -1 after nbdkit_error.
 */
extern int remap_store_lock_settle (bool readonly);
extern void remap_store_lock_release (void);

#endif /* REMAP_STORELOCK_H */
