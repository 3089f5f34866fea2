/* nbdkit-remap: the server's store lock (see storelock.h, lock.h).
 *
 * The filter cannot lock the plugin, but it sees every key=value the
 * plugin gets: each file= names a file we can flock ourselves (the
 * file plugin's image or block device); with none, the store is
 * named by all of the plugin's parameters, and locked through a lock
 * file in REMAP_LOCK_DIR.  The spare file of external mode is locked
 * by the code that opens it (filestore.c).
 *
 * The lock is taken in .get_ready, before nbdkit forks, so that a
 * second server is refused with the message on its terminal, before
 * it has read a byte.  Read-only mode is known only at the first
 * client: until then a lock that a read-only server holds shared is
 * taken shared, and the first client's load settles it (shared for a
 * read-only server, exclusive or refused for one that can write), so
 * a read-only server without a client yet holds it exclusively.  The
 * descriptors survive the fork (the parent's copies close when it
 * exits; the lock stays with the child's).
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include <nbdkit-filter.h>

#include "lock.h"
#include "params.h"
#include "storelock.h"

static int *lock_fds;
static size_t nr_lock_fds;
static bool any_shared_only;            /* some lock could only be shared */

int
remap_store_lock_take (void)
{
  size_t n = params.nr_plugin_files ? params.nr_plugin_files : 1;

  lock_fds = calloc (n, sizeof *lock_fds);
  if (lock_fds == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    bool shared_only;
    int fd = params.nr_plugin_files
      ? remap_lock_path (params.plugin_files[i], true, &shared_only)
      : remap_lock_named (params.plugin_key ? params.plugin_key : "", true,
                          &shared_only);
    if (fd == -1) {
      remap_store_lock_release ();
      return -1;
    }
    lock_fds[nr_lock_fds++] = fd;
    any_shared_only |= shared_only;
  }
  return 0;
}

int
remap_store_lock_settle (bool readonly)
{
  for (size_t i = 0; i < nr_lock_fds; i++) {
    if (readonly ? remap_lock_share (lock_fds[i]) == 0
        : !any_shared_only || remap_lock_exclusive (lock_fds[i]) == 0)
      continue;
    if (errno == EWOULDBLOCK)
      nbdkit_error ("the disk is in use by a read-only nbdkit (it is locked "
                    "shared); stop that one first, or start this one "
                    "read-only too");
    else
      nbdkit_error ("remap: cannot change the store lock: %m");
    return -1;
  }
  return 0;
}

void
remap_store_lock_release (void)
{
  for (size_t i = 0; i < nr_lock_fds; i++)
    remap_lock_release (lock_fds[i]);
  free (lock_fds);
  lock_fds = NULL;
  nr_lock_fds = 0;
}
