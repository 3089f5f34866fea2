/* nbdkit-remap: the lock that says "a server is using this remap
 * table", shared with remapctl so that offline changes never happen
 * under a running server.
 */
#ifndef REMAP_LOCK_H
#define REMAP_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Takes the lock of the table with this identity: exclusive for a
 * writer, shared for a reader.  Returns a descriptor to keep open, or
 * -1 with errno EWOULDBLOCK if someone holds it the other way.  path
 * receives the lock file's name, for messages.
 */
extern int remap_lock_acquire (const uint8_t uuid[16], bool exclusive,
                               char *path, size_t path_len);
extern void remap_lock_release (int fd);

#endif /* REMAP_LOCK_H */
