/* nbdkit-remap: the in-use lock (see lock.h).
 *
 * The table cannot lock itself: in internal mode it lives on whatever
 * the plugin serves, which we cannot flock.  So the lock is a file
 * named after the table's identity in /run/lock (a tmpfs cleared at
 * boot) or /tmp, held with flock, which the kernel drops when the
 * holder dies, even by SIGKILL: a crashed server never leaves a stale
 * lock behind.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include "lock.h"

static const char *
lock_dir (void)
{
  return access ("/run/lock", W_OK | X_OK) == 0 ? "/run/lock" : "/tmp";
}

int
remap_lock_acquire (const uint8_t uuid[16], bool exclusive,
                    char *path, size_t path_len)
{
  char hex[33];
  int fd;

  for (int i = 0; i < 16; i++)
    snprintf (hex + 2*i, 3, "%02x", uuid[i]);
  snprintf (path, path_len, "%s/nbdkit-remap-%s.lock", lock_dir (), hex);
  fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd == -1)
    return -1;
  if (flock (fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == -1) {
    int saved = errno;
    close (fd);
    errno = saved;
    return -1;
  }
  return fd;
}

void
remap_lock_release (int fd)
{
  if (fd >= 0)
    close (fd);
}
