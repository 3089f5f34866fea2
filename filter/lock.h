/* nbdkit-remap: the store lock, which says "a server or remapctl is
 * using this store".  It is taken before anything is read or written,
 * so at most one server or remapctl ever formats or changes a table.
 *
 * What is locked (flock, on a descriptor of our own):
 *   - every file the plugin was given as file=PATH (the file plugin's
 *     disk image or block device), in internal and external mode;
 *   - the spare file in external mode (filestore.c locks it when it
 *     opens it for writing);
 *   - for a plugin with no file=, a lock file in REMAP_LOCK_DIR named
 *     after a hash of the plugin's parameters.
 * A writer holds the lock exclusively, a read-only server shared.
 * The kernel drops a flock when its holder dies, even by SIGKILL, so a
 * crash never leaves a stale lock.
 */
#ifndef REMAP_LOCK_H
#define REMAP_LOCK_H

#include <stdbool.h>
#include <stddef.h>

/* The one directory for lock files, whatever the user: root creates
 * it 0700; it must be a real directory owned by root (or by the user
 * running the server) and writable by nobody else.
 */
#define REMAP_LOCK_DIR "/run/nbdkit-remap"

/* Locks the file at path (already resolved by realpath).  Returns a
 * descriptor to keep open, or -1 after nbdkit_error; errno is
 * EWOULDBLOCK if another server or remapctl holds it.  With
 * shared_only not NULL, an exclusive lock that is held shared by
 * someone else is taken shared instead, and *shared_only says so.
 */
extern int remap_lock_path (const char *path, bool exclusive,
                            bool *shared_only);

/* Locks REMAP_LOCK_DIR/HASH.lock, HASH being a hash of key.  The lock
 * file is created 0600 without following a symbolic link, and refused
 * if it is not a regular file owned by this user.  Returns a
 * descriptor, or -1 after nbdkit_error (errno EWOULDBLOCK if held).
 */
extern int remap_lock_named (const char *key, bool exclusive,
                             bool *shared_only);

/* Turns an exclusive lock into a shared one (a read-only server), or
 * a shared one into an exclusive one, without waiting: -1 with errno
 * EWOULDBLOCK if someone else holds it.
 */
extern int remap_lock_share (int fd);
extern int remap_lock_exclusive (int fd);

extern void remap_lock_release (int fd);

#endif /* REMAP_LOCK_H */
