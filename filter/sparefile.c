/* nbdkit-remap: the external spare file (see sparefile.h).
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

#include "sparefile.h"

static int
file_pread (void *opaque, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  struct remap_sparefile *f = opaque;
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
  struct remap_sparefile *f = opaque;
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
  struct remap_sparefile *f = opaque;

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
  struct remap_sparefile *f = opaque;

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
  struct remap_sparefile *f = opaque;

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
  struct remap_sparefile *f = opaque;
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
remap_sparefile_open (struct remap_sparefile *f, const char *path,
                      bool readonly)
{
  struct stat st;

  memset (f, 0, sizeof *f);
  f->fd = open (path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (f->fd == -1 && errno == ENOENT && !readonly) {
    f->fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    f->created = f->fd >= 0;
  }
  if (f->fd == -1) {
    nbdkit_error ("remap-spare: cannot open %s: %m", path);
    return -1;
  }
  if (fstat (f->fd, &st) == -1 || !S_ISREG (st.st_mode)) {
    nbdkit_error ("remap-spare: %s is not a regular file", path);
    close (f->fd);
    return -1;
  }
  if (flock (f->fd, (readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) == -1) {
    nbdkit_error ("remap-spare: %s is in use by another nbdkit or remapctl "
                  "(it is locked); stop that one first", path);
    close (f->fd);
    return -1;
  }
  f->io = (struct remap_io) {
    .opaque = f,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .trim = file_trim,
    .truncate = file_truncate,
    .flush = file_flush,
    .extent = file_extent,
  };
  return 0;
}

int
remap_sparefile_size (struct remap_sparefile *f, uint64_t *size)
{
  struct stat st;

  if (fstat (f->fd, &st) == -1)
    return -1;
  *size = st.st_size;
  return 0;
}

void
remap_sparefile_close (struct remap_sparefile *f, const char *path,
                       bool remove_if_created)
{
  if (f->fd >= 0) {
    if (remove_if_created && f->created)
      unlink (path);
    close (f->fd);
    f->fd = -1;
  }
}
