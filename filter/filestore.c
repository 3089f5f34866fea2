/* nbdkit-remap: files and block devices as stores (see filestore.h).
 *
 * Plain pread/pwrite/fdatasync on one descriptor shared by all
 * connections and by the sync thread.  fdatasync tells a writeback
 * error once per descriptor, so who heard it is tracked (errseq.c):
 * the sync thread's fdatasync must not hide the loss of a client's
 * spare write from that client's flush.  Holes (SEEK_DATA/SEEK_HOLE) tell the start-up check
 * which parts are unused without reading them.
 *
 * A spare file holds copies of the disk's sectors and decides what the
 * export returns, and the server often runs as root next to other
 * accounts.  So a spare file must be private to the server's user: it
 * is opened without following a link that another account could have
 * placed, and an existing one is refused unless it is a regular file
 * of this user with no access for group or other and one name, or a
 * block device that other accounts cannot open (device nodes belong
 * to root and the disk group, which is as good as root).  A new one is
 * made with O_EXCL and mode 0600.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "errseq.h"
#include "filestore.h"

static int
file_pread (void *opaque, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  struct remap_file *f = opaque;
  char *p = buf;

  (void) flags;
  while (count > 0) {
    ssize_t r = pread (f->fd, p, count, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      *err = errno;
      return -1;
    }
    if (r == 0) {               /* past the end of a sparse file: zeros */
      memset (p, 0, count);
      return 0;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

static int
file_pwrite (void *opaque, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  struct remap_file *f = opaque;
  const char *p = buf;
  uint64_t at_start = remap_errseq_write_begin (&f->errseq, flags);
  int ret = 0;

  while (count > 0) {
    ssize_t r = pwrite (f->fd, p, count, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      *err = errno;
      ret = -1;
      break;
    }
    p += r;
    count -= r;
    offset += r;
  }
  /* FUA here rather than by the caller's flush, so that an error that
   * another party's fdatasync heard meanwhile fails this write.
   */
  if (flags & REMAP_FLAG_FUA)
    return remap_errseq_fua_by_flush (&f->errseq, ret, err, at_start);
  return remap_errseq_write_end (&f->errseq, ret, flags, err, at_start);
}

/* The flush itself, without bookkeeping. */
static int
file_fdatasync (void *opaque, int *err)
{
  struct remap_file *f = opaque;

  if (fdatasync (f->fd) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

/* The filter's own flush: remap_io_flush_reported is the clients'. */
static int
file_flush (void *opaque, int *err)
{
  return remap_errseq_flush (&((struct remap_file *) opaque)->errseq, false,
                             err);
}

/* Punching a hole is how a spare file forgets a trimmed spare; where
 * the file system cannot, trimming is simply skipped.
 */
static int
file_truncate (void *opaque, uint64_t size, int *err)
{
  struct remap_file *f = opaque;

  if (ftruncate (f->fd, size) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

static int
file_trim (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
           int *err)
{
  struct remap_file *f = opaque;

  (void) flags;
  if (fallocate (f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 offset, count) == -1 &&
      errno != EOPNOTSUPP && errno != ENOSYS) {
    *err = errno;
    return -1;
  }
  return 0;
}

static int
file_extent (void *opaque, uint32_t count, uint64_t offset, uint64_t *run,
             bool *zero, int *err)
{
  struct remap_file *f = opaque;
  off_t data = lseek (f->fd, offset, SEEK_DATA);

  if (data == -1) {
    if (errno == ENXIO) {       /* a hole up to the end of the file */
      *zero = true;
      *run = count;
      return 0;
    }
    if (errno == EINVAL || errno == EOPNOTSUPP) {
      *zero = false;
      *run = count;
      return 0;
    }
    *err = errno;
    return -1;
  }
  if ((uint64_t) data > offset) {
    *zero = true;
    *run = (uint64_t) data - offset;
  }
  else {
    off_t hole = lseek (f->fd, offset, SEEK_HOLE);
    *zero = false;
    *run = hole == -1 ? count : (uint64_t) hole - offset;
  }
  if (*run > count)
    *run = count;
  return 0;
}

static bool
trusted_owner (uid_t uid)
{
  return uid == 0 || uid == geteuid ();
}

/* True if no account but root and this user can change where path
 * leads.  It is followed one name at a time from /, as the kernel
 * would: every directory passed through belongs to one of them and is
 * not writable by group or other unless it is sticky (others cannot
 * rename or remove what they do not own), and every symbolic link met
 * belongs to one of them, whether it is the path's own or one that a
 * link leads to (a link to a name in another account's directory lets
 * that account choose the file).  Used for a spare file given as a
 * link (like /dev/disk/by-id/... to a spare disk).
 */
static bool
trusted_path (const char *path)
{
  CLEANUP_FREE char *cwd = NULL;
  char *dir = NULL, *rest = NULL, *next, *more;
  char target[PATH_MAX];
  unsigned links = 0;
  bool ok = false;
  struct stat st;
  ssize_t n;

  if (path[0] != '/' && (cwd = getcwd (NULL, 0)) == NULL)
    return false;
  if ((dir = strdup ("/")) == NULL ||
      asprintf (&rest, "%s/%s", cwd ? cwd : "", path) == -1) {
    free (dir);
    return false;
  }
  for (size_t i = 0;;) {
    char *name, save;

    while (rest[i] == '/')
      i++;
    if (rest[i] == '\0') {
      ok = true;
      break;
    }
    name = &rest[i];
    i += strcspn (name, "/");
    save = rest[i];
    rest[i] = '\0';
    if (strcmp (name, "..") == 0) {
      char *slash = strrchr (dir, '/');
      slash[slash == dir] = '\0';      /* dir holds no links: its parent */
    }
    else if (strcmp (name, ".") != 0) {
      if (stat (dir, &st) == -1 || !trusted_owner (st.st_uid) ||
          ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) ||
          asprintf (&next, "%s%s%s", dir, strcmp (dir, "/") ? "/" : "",
                    name) == -1)
        break;
      if (lstat (next, &st) == -1) {
        /* A dangling link: the open says so. */
        ok = errno == ENOENT && save == '\0';
        free (next);
        break;
      }
      if (!S_ISLNK (st.st_mode)) {
        free (dir);
        dir = next;
      }
      else {
        n = -1;
        if (trusted_owner (st.st_uid) && ++links <= 40)
          n = readlink (next, target, sizeof target - 1);
        free (next);
        if (n == -1)
          break;
        target[n] = '\0';
        rest[i] = save;
        if (asprintf (&more, "%s%s", target, &rest[i]) == -1)
          break;
        free (rest);
        rest = more;
        i = 0;
        if (target[0] == '/')
          strcpy (dir, "/");
        continue;
      }
    }
    rest[i] = save;
  }
  free (dir);
  free (rest);
  return ok;
}

/* An existing spare file must be private (see the top of the file).
 * Says what is wrong and the command that fixes it.
 */
static int
check_private (const char *what, const char *path, const struct stat *st)
{
  const unsigned mode = st->st_mode & 07777;

  if (S_ISBLK (st->st_mode)) {
    if (mode & (S_IROTH | S_IWOTH)) {
      nbdkit_error ("%s: the block device %s may be read or written by "
                    "any account (mode %04o): they could read or change "
                    "the spares; chmod o-rw %s", what, path, mode, path);
      return -1;
    }
    return 0;
  }
  if (st->st_uid != geteuid ()) {
    nbdkit_error ("%s: %s belongs to uid %u, not to this server's user "
                  "(uid %u): its owner could read or change the spares; "
                  "if it is yours, chown %u %s", what, path,
                  (unsigned) st->st_uid, (unsigned) geteuid (),
                  (unsigned) geteuid (), path);
    return -1;
  }
  if (mode & (S_IRWXG | S_IRWXO)) {
    nbdkit_error ("%s: %s may be read or written by group or other "
                  "(mode %04o): they could read or change the spares; "
                  "chmod 600 %s", what, path, mode, path);
    return -1;
  }
  if (st->st_nlink != 1) {
    nbdkit_error ("%s: %s has %ju names (hard links), so it may be another "
                  "file too; a spare file must have one: use a copy "
                  "(cp %s NEWFILE)", what, path, (uintmax_t) st->st_nlink,
                  path);
    return -1;
  }
  return 0;
}

int
remap_file_open (struct remap_file *f, const char *what, const char *path,
                 unsigned flags)
{
  const bool write = flags & REMAP_FILE_WRITE;
  const bool spare = flags & REMAP_FILE_SPARE;
  /* O_NONBLOCK: a FIFO at the path must not hang the open; it is
   * refused below, and the flag cleared for the rest.
   */
  const int oflags = (write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK;
  struct stat st;
  off_t end;

  memset (f, 0, sizeof *f);
  f->fd = open (path, oflags | (spare ? O_NOFOLLOW : 0));
  if (f->fd == -1 && errno == ELOOP && spare) {
    if (!trusted_path (path)) {
      nbdkit_error ("%s: %s is a symbolic link that another account could "
                    "have placed (the link, a link it leads to, or a "
                    "directory on the way belongs to another user or is "
                    "writable by others); give a path that only root or "
                    "this user controls", what, path);
      return -1;
    }
    f->fd = open (path, oflags);
  }
  if (f->fd == -1 && errno == ENOENT && write && (flags & REMAP_FILE_CREATE)) {
    f->fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0600);
    f->created = f->fd >= 0;
  }
  if (f->fd == -1) {
    nbdkit_error ("%s: cannot open %s: %m", what, path);
    return -1;
  }
  if (fstat (f->fd, &st) == -1 ||
      (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode))) {
    nbdkit_error ("%s: %s is not a regular file or block device", what, path);
    goto error;
  }
  if (spare && check_private (what, path, &st) == -1)
    goto error;
  if (fcntl (f->fd, F_SETFL, fcntl (f->fd, F_GETFL) & ~O_NONBLOCK) == -1) {
    nbdkit_error ("%s: %s: fcntl: %m", what, path);
    goto error;
  }
  /* Only writers lock: reading (remapctl show while a server runs)
   * is always allowed.
   */
  if (write && flock (f->fd, LOCK_EX | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK) {
      /* Even a file we just created: another process opened it before
       * we could lock it, and locked it first.  It is theirs now, not
       * ours to remove.
       */
      f->created = false;
      nbdkit_error ("%s: %s is in use by another nbdkit or remapctl (it is "
                    "locked); stop that one first", what, path);
    }
    else
      nbdkit_error ("%s: cannot lock %s: %m", what, path);
    goto error;
  }
  end = lseek (f->fd, 0, SEEK_END);
  if (end == -1) {
    nbdkit_error ("%s: %s: %m", what, path);
    goto error;
  }
  f->size = end;
  remap_errseq_init (&f->errseq, file_fdatasync, f, true);
  f->io = (struct remap_io) {
    .opaque = f,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .trim = S_ISREG (st.st_mode) ? file_trim : NULL,
    .flush = file_flush,
    .can_fua = true,
    .extent = S_ISREG (st.st_mode) ? file_extent : NULL,
    .truncate = spare && write && S_ISREG (st.st_mode)
      ? file_truncate : NULL,
    .errseq = &f->errseq,
  };
  return 0;

 error:
  close (f->fd);
  if (f->created)
    unlink (path);
  f->fd = -1;
  return -1;
}

void
remap_file_close (struct remap_file *f, const char *path,
                  bool remove_if_created)
{
  if (f->fd >= 0) {
    if (remove_if_created && f->created)
      unlink (path);
    close (f->fd);
    f->fd = -1;
  }
}
