/* nbdkit-remap: files and block devices as stores (see filestore.h).
 *
 * Plain pread/pwrite/fdatasync on one descriptor shared by all
 * connections; holes (SEEK_DATA/SEEK_HOLE) tell the start-up check
 * which parts are unused without reading them.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

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

  (void) flags;
  while (count > 0) {
    ssize_t r = pwrite (f->fd, p, count, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      *err = errno;
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

static int
file_flush (void *opaque, int *err)
{
  struct remap_file *f = opaque;

  if (fdatasync (f->fd) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
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

int
remap_file_open (struct remap_file *f, const char *what, const char *path,
                 unsigned flags)
{
  const bool write = flags & REMAP_FILE_WRITE;
  struct stat st;
  off_t end;

  memset (f, 0, sizeof *f);
  f->fd = open (path, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (f->fd == -1 && errno == ENOENT && write && (flags & REMAP_FILE_CREATE)) {
    f->fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
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
  /* Only writers lock: reading (remapctl show while a server runs)
   * is always allowed.
   */
  if (write && flock (f->fd, LOCK_EX | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK)
      nbdkit_error ("%s: %s is in use by another nbdkit or remapctl (it is "
                    "locked); stop that one first", what, path);
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
  f->io = (struct remap_io) {
    .opaque = f,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .trim = S_ISREG (st.st_mode) ? file_trim : NULL,
    .flush = file_flush,
    .extent = S_ISREG (st.st_mode) ? file_extent : NULL,
    .truncate = (flags & REMAP_FILE_TRUNCATE) && S_ISREG (st.st_mode)
      ? file_truncate : NULL,
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
