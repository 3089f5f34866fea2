/* nbdkit-remap torture test: a power cut for the spare file.
 *
 * LD_PRELOADed into nbdkit in external mode with --powerloss.  A
 * SIGKILL loses nothing that a process wrote to a file (the page cache
 * survives it), so by itself it cannot show a flush that returned
 * before the spare file was durable.  This library keeps an undo
 * journal for one file (TORTURE_POWERLOSS_FILE): before each pwrite
 * to it, the bytes it replaces are appended to the journal
 * (TORTURE_POWERLOSS_JOURNAL); a successful fdatasync or fsync of it
 * empties the journal.  After the SIGKILL, the torture test plays the
 * journal backwards (powerloss_undo in server.c): the file is then as
 * a power cut would have left it, with nothing written since its last
 * sync.
 *
 * TORTURE_POWERLOSS_DELAY_US makes each write to the file wait up to
 * that long first, like a slow device: flushes then race with writes.
 *
 * One mutex covers "save the old bytes, write the new" and "sync,
 * empty the journal", so that a write is either before a sync (and
 * durable) or after it (and undone).  The file is recognised by
 * device and inode, looked up until it exists (the filter may create
 * it).
 */
#define _GNU_SOURCE
#include <config.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "powerloss.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static dev_t target_dev;
static ino_t target_ino;
static bool found;
static int journal = -1;

static ssize_t (*real_pwrite) (int, const void *, size_t, off_t);
static int (*real_fdatasync) (int);
static int (*real_fsync) (int);

static void
init (void)
{
  if (!real_pwrite) {
    real_pwrite = dlsym (RTLD_NEXT, "pwrite");
    real_fdatasync = dlsym (RTLD_NEXT, "fdatasync");
    real_fsync = dlsym (RTLD_NEXT, "fsync");
  }
}

/* Is FD the file being watched?  Called with the lock held. */
static bool
is_target (int fd)
{
  const char *path = getenv ("TORTURE_POWERLOSS_FILE");
  struct stat st;

  if (!path)
    return false;
  if (!found) {
    if (stat (path, &st) == -1)
      return false;
    target_dev = st.st_dev;
    target_ino = st.st_ino;
    found = true;
  }
  return fstat (fd, &st) == 0 && st.st_dev == target_dev &&
    st.st_ino == target_ino;
}

static void
journal_write (const void *p, size_t n)
{
  const char *path = getenv ("TORTURE_POWERLOSS_JOURNAL");

  if (journal == -1 && path)
    journal = open (path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (journal == -1 || write (journal, p, n) != (ssize_t) n)
    abort ();                   /* an undo that cannot be kept */
}

/* A slow spare device: each write to the file first waits up to
 * TORTURE_POWERLOSS_DELAY_US microseconds (random), with no lock
 * held, so that flushes run while writes are on their way.
 */
static void
slow_down (void)
{
  static __thread uint64_t x;
  const char *max = getenv ("TORTURE_POWERLOSS_DELAY_US");
  long us = max ? atol (max) : 0;

  if (us <= 0)
    return;
  if (!x)
    x = (uint64_t) pthread_self () | 1;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  usleep (x % us);
}

ssize_t
pwrite (int fd, const void *buf, size_t count, off_t offset)
{
  struct powerloss_record r;
  struct stat st;
  char *old;
  ssize_t got, ret;

  init ();
  pthread_mutex_lock (&lock);
  if (!is_target (fd)) {
    pthread_mutex_unlock (&lock);
    return real_pwrite (fd, buf, count, offset);
  }
  pthread_mutex_unlock (&lock);
  slow_down ();
  pthread_mutex_lock (&lock);
  if (fstat (fd, &st) == -1)
    abort ();
  old = malloc (count ? count : 1);
  got = old ? pread (fd, old, count, offset) : -1;
  if (got < 0)
    abort ();
  r = (struct powerloss_record) { .offset = offset, .len = got,
                                  .old_size = st.st_size };
  journal_write (&r, sizeof r);
  journal_write (old, got);
  free (old);
  ret = real_pwrite (fd, buf, count, offset);
  pthread_mutex_unlock (&lock);
  return ret;
}

/* The same function under its large-file name (on 64-bit systems
 * off_t is already 64 bits).
 */
ssize_t
pwrite64 (int fd, const void *buf, size_t count, off_t offset)
{
  return pwrite (fd, buf, count, offset);
}

static int
sync_and_forget (int fd, int (*real) (int))
{
  int r;

  init ();
  pthread_mutex_lock (&lock);
  r = real (fd);
  if (r == 0 && is_target (fd) && journal != -1 &&
      ftruncate (journal, 0) == -1)
    abort ();
  pthread_mutex_unlock (&lock);
  return r;
}

int
fdatasync (int fd)
{
  init ();
  return sync_and_forget (fd, real_fdatasync);
}

int
fsync (int fd)
{
  init ();
  return sync_and_forget (fd, real_fsync);
}
