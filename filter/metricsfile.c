/* nbdkit-remap: replacing the metrics file safely (see metricsfile.h).
 *
 * The metrics file often lives in a directory that other accounts can
 * write (a node-exporter textfile directory), while the server runs as
 * root.  So no name in that directory is ever opened in a way that an
 * account there could redirect:
 *
 *   - the text goes to a new temporary file with a unique name
 *     (mkostemp: O_CREAT|O_EXCL, which never follows a link and never
 *     opens something planted there), made 0644 by fchmod, written,
 *     fsynced, then renamed over the target;
 *   - rename replaces the directory entry itself: a symbolic link
 *     planted at the target is replaced, never followed;
 *   - a target that exists and is not a regular file (a link, a FIFO,
 *     a directory) is refused at start-up and skipped while serving,
 *     so that nothing planted there is ever silently removed.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "metricsfile.h"

#define METRICS_MODE 0644

/* 0 if the target is missing or a regular file.  Otherwise -1 with
 * errno set: ELOOP for a symbolic link, EEXIST for anything else.
 */
static int
check_target (const char *path)
{
  struct stat st;

  if (lstat (path, &st) == -1)
    return errno == ENOENT ? 0 : -1;
  if (S_ISREG (st.st_mode))
    return 0;
  errno = S_ISLNK (st.st_mode) ? ELOOP : EEXIST;
  return -1;
}

/* Creates the temporary file next to the target.  Returns its
 * descriptor and sets *tmp, or -1 with errno set.
 */
static int
create_temp (const char *path, char **tmp)
{
  int fd;

  if (asprintf (tmp, "%s.XXXXXX", path) == -1) {
    *tmp = NULL;
    return -1;
  }
  fd = mkostemp (*tmp, O_CLOEXEC);
  if (fd == -1) {
    free (*tmp);
    *tmp = NULL;
    return -1;
  }
  if (fchmod (fd, METRICS_MODE) == -1) {
    int e = errno;
    close (fd);
    unlink (*tmp);
    free (*tmp);
    *tmp = NULL;
    errno = e;
    return -1;
  }
  return fd;
}

static int
write_all (int fd, const char *p, size_t len)
{
  while (len > 0) {
    ssize_t n = write (fd, p, len);
    if (n == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += n;
    len -= n;
  }
  return 0;
}

int
remap_metrics_file_check (const char *path)
{
  CLEANUP_FREE char *tmp = NULL;
  int fd;

  if (check_target (path) == -1) {
    if (errno == ELOOP || errno == EEXIST)
      nbdkit_error ("remap-metrics-file: %s exists and is not a regular "
                    "file (%s); the filter replaces only regular files: "
                    "remove it or choose another path", path,
                    errno == ELOOP ? "a symbolic link" : "a FIFO, socket, "
                    "device or directory");
    else
      nbdkit_error ("remap-metrics-file: %s: %m", path);
    return -1;
  }
  fd = create_temp (path, &tmp);
  if (fd == -1) {
    nbdkit_error ("remap-metrics-file: cannot write %s: %m (does the "
                  "directory exist, and may nbdkit write to it?)", path);
    return -1;
  }
  close (fd);
  unlink (tmp);
  return 0;
}

int
remap_metrics_file_write (const char *path, const char *text, size_t len)
{
  CLEANUP_FREE char *tmp = NULL;
  int fd, e;

  if (check_target (path) == -1)
    return -1;
  fd = create_temp (path, &tmp);
  if (fd == -1)
    return -1;
  if (write_all (fd, text, len) == -1 || fsync (fd) == -1) {
    e = errno;
    close (fd);
    goto error;
  }
  if (close (fd) == -1 || rename (tmp, path) == -1) {
    e = errno;
    goto error;
  }
  return 0;

 error:
  unlink (tmp);
  errno = e;
  return -1;
}
