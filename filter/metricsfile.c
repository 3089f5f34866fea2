/* nbdkit-remap: replacing the metrics file safely (see metricsfile.h).
 *
 * The metrics file often lives in a directory that other accounts can
 * write (a node-exporter textfile directory), while the server runs as
 * root.  So no name in that directory is ever opened in a way that an
 * account there could redirect:
 *
 *   - the directory is opened once, before the fork, and every write
 *     goes through that descriptor: an account that can rename the
 *     directory (it owns the one above) and put a link in its place
 *     does not redirect the writes into another directory;
 *   - the text goes to a new temporary file with a unique, random
 *     name (O_CREAT|O_EXCL|O_NOFOLLOW, which never follows a link and
 *     never opens something planted there), made 0644 by fchmod,
 *     written, fsynced, then renamed over the target;
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
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "metricsfile.h"

#define METRICS_MODE 0644
#define TEMP_TRIES 100

/* Set by remap_metrics_file_check. */
static int dir_fd = -1;
static char *base;              /* the file's name in that directory */

/* 0 if the target is missing or a regular file.  Otherwise -1 with
 * errno set: ELOOP for a symbolic link, EEXIST for anything else.
 */
static int
check_target (void)
{
  struct stat st;

  if (fstatat (dir_fd, base, &st, AT_SYMLINK_NOFOLLOW) == -1)
    return errno == ENOENT ? 0 : -1;
  if (S_ISREG (st.st_mode))
    return 0;
  errno = S_ISLNK (st.st_mode) ? ELOOP : EEXIST;
  return -1;
}

/* Creates the temporary file next to the target, with a name nobody
 * can guess.  Returns its descriptor and sets *tmp, or -1 with errno
 * set.
 */
static int
create_temp (char **tmp)
{
  int fd = -1;

  for (int i = 0; fd == -1 && i < TEMP_TRIES; i++) {
    unsigned long long r;
    if (getrandom (&r, sizeof r, 0) != sizeof r ||
        asprintf (tmp, "%s.%016llx", base, r) == -1) {
      *tmp = NULL;
      return -1;
    }
    fd = openat (dir_fd, *tmp,
                 O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd == -1) {
      free (*tmp);
      *tmp = NULL;
      if (errno != EEXIST)
        return -1;
    }
  }
  if (fd == -1)
    return -1;
  if (fchmod (fd, METRICS_MODE) == -1) {
    int e = errno;
    close (fd);
    unlinkat (dir_fd, *tmp, 0);
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

/* Opens the directory of path, and keeps its last name. */
static int
open_dir (const char *path)
{
  const char *slash = strrchr (path, '/');
  CLEANUP_FREE char *dir = NULL;

  if (slash == NULL || slash[1] == '\0') {
    errno = EISDIR;
    return -1;
  }
  dir = slash == path ? strdup ("/") : strndup (path, slash - path);
  if (dir == NULL || (base = strdup (slash + 1)) == NULL)
    return -1;
  dir_fd = open (dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  return dir_fd == -1 ? -1 : 0;
}

int
remap_metrics_file_check (const char *path)
{
  CLEANUP_FREE char *tmp = NULL;
  int fd;

  if (open_dir (path) == -1) {
    nbdkit_error ("remap-metrics-file: cannot open the directory of %s: %m "
                  "(does it exist?)", path);
    return -1;
  }
  if (check_target () == -1) {
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
  fd = create_temp (&tmp);
  if (fd == -1) {
    nbdkit_error ("remap-metrics-file: cannot write %s: %m (does the "
                  "directory exist, and may nbdkit write to it?)", path);
    return -1;
  }
  close (fd);
  unlinkat (dir_fd, tmp, 0);
  return 0;
}

int
remap_metrics_file_write (const char *text, size_t len)
{
  CLEANUP_FREE char *tmp = NULL;
  int fd, e;

  if (check_target () == -1)
    return -1;
  fd = create_temp (&tmp);
  if (fd == -1)
    return -1;
  if (write_all (fd, text, len) == -1 || fsync (fd) == -1) {
    e = errno;
    close (fd);
    goto error;
  }
  if (close (fd) == -1 || renameat (dir_fd, tmp, dir_fd, base) == -1) {
    e = errno;
    goto error;
  }
  return 0;

 error:
  unlinkat (dir_fd, tmp, 0);
  errno = e;
  return -1;
}

void
remap_metrics_file_close (void)
{
  if (dir_fd >= 0)
    close (dir_fd);
  dir_fd = -1;
  free (base);
  base = NULL;
}
