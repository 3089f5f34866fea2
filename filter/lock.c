/* nbdkit-remap: the store lock (see lock.h).
 *
 * Why a lock on the store and not on the table's identity: the
 * identity exists only after format, so two servers starting at once
 * on one blank disk both saw "no metadata" and both formatted it.  A
 * lock on the file itself is taken before the first read.
 *
 * Why lock files are opened the way they are: REMAP_LOCK_DIR may be
 * created by hand, and a lock name is predictable, so an account that
 * could write there could plant a symbolic link (root would create
 * the link's target) or a file of its own that it keeps locked (the
 * server would never start).  O_NOFOLLOW and the owner checks refuse
 * both, naming the file to remove.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "lock.h"

/* Opened, now lock it; says who holds it when it is held. */
static int
lock_fd (int fd, const char *path, bool exclusive, bool *shared_only)
{
  int r = flock (fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);

  if (shared_only)
    *shared_only = false;
  if (r == -1 && errno == EWOULDBLOCK && exclusive && shared_only) {
    *shared_only = true;
    r = flock (fd, LOCK_SH | LOCK_NB);
  }
  if (r == -1) {
    int saved = errno;
    if (saved == EWOULDBLOCK)
      nbdkit_error ("%s is in use by another nbdkit or by remapctl (it is "
                    "locked); stop that one first", path);
    else
      nbdkit_error ("cannot lock %s: %m", path);
    close (fd);
    errno = saved;
    return -1;
  }
  return fd;
}

int
remap_lock_path (const char *path, bool exclusive, bool *shared_only)
{
  /* Read-only is enough for flock, and closing a block device opened
   * read-only does not make udev rescan it.  O_NONBLOCK: a FIFO must
   * not hang us.
   */
  int fd = open (path, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK |
                 O_CLOEXEC);

  if (fd == -1) {
    int saved = errno;
    nbdkit_error ("cannot open %s to lock it: %m", path);
    errno = saved;
    return -1;
  }
  return lock_fd (fd, path, exclusive, shared_only);
}

static int
check_lock_dir (void)
{
  struct stat st;

  if (mkdir (REMAP_LOCK_DIR, 0700) == -1 && errno != EEXIST) {
    nbdkit_error ("cannot create the lock directory %s: %m (a plugin "
                  "without file= is locked there; run as root, or have "
                  "root create it owned by this user, mode 0700)",
                  REMAP_LOCK_DIR);
    return -1;
  }
  if (lstat (REMAP_LOCK_DIR, &st) == -1) {
    nbdkit_error ("%s: %m", REMAP_LOCK_DIR);
    return -1;
  }
  if (!S_ISDIR (st.st_mode) ||
      (st.st_uid != 0 && st.st_uid != geteuid ()) ||
      (st.st_mode & (S_IWGRP | S_IWOTH))) {
    nbdkit_error ("the lock directory %s is not a directory owned by root "
                  "(or this user) and writable only by its owner; refusing "
                  "to use it.  Remove it (root creates it again, mode "
                  "0700)", REMAP_LOCK_DIR);
    errno = EPERM;
    return -1;
  }
  return 0;
}

/* FNV-1a, 64 bits: a name, not a secret. */
static uint64_t
hash_key (const char *key)
{
  uint64_t h = UINT64_C (0xcbf29ce484222325);

  for (const unsigned char *p = (const unsigned char *) key; *p; p++)
    h = (h ^ *p) * UINT64_C (0x100000001b3);
  return h;
}

int
remap_lock_named (const char *key, bool exclusive, bool *shared_only)
{
  char path[sizeof REMAP_LOCK_DIR + 32];
  struct stat st;
  int fd;

  if (check_lock_dir () == -1)
    return -1;
  snprintf (path, sizeof path, "%s/%016" PRIx64 ".lock", REMAP_LOCK_DIR,
            hash_key (key));
  fd = open (path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK |
             O_CLOEXEC, 0600);
  if (fd == -1) {
    int saved = errno;
    if (saved == ELOOP)
      nbdkit_error ("the lock file %s is a symbolic link; refusing to "
                    "follow it.  Remove it", path);
    else
      nbdkit_error ("cannot create the lock file %s: %m", path);
    errno = saved;
    return -1;
  }
  if (fstat (fd, &st) == -1 || !S_ISREG (st.st_mode) ||
      st.st_uid != geteuid ()) {
    nbdkit_error ("the lock file %s is not a regular file owned by this "
                  "user; refusing to use it.  Remove it", path);
    close (fd);
    errno = EPERM;
    return -1;
  }
  nbdkit_debug ("remap: store lock file %s", path);
  return lock_fd (fd, path, exclusive, shared_only);
}

int
remap_lock_share (int fd)
{
  return flock (fd, LOCK_SH | LOCK_NB);
}

int
remap_lock_exclusive (int fd)
{
  return flock (fd, LOCK_EX | LOCK_NB);
}

void
remap_lock_release (int fd)
{
  if (fd >= 0)
    close (fd);
}
