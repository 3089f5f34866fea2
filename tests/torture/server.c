/* nbdkit-remap torture test: starting, killing and stopping the
 * server, and its control socket.
 *
 * The server is `timeout T nbdkit -f -U SOCK -P PIDFILE
 * --filter=REMAP --filter=BADSECTOR [--filter=cache] file DISK ...`,
 * with its log in DIR/nbdkit-N.log.  Only one runs at a time; the
 * PIDs of both timeout and nbdkit are kept so that each is killed by
 * PID, and a server that hangs is ended by timeout(1) anyway.
 *
 * This program is the subreaper of its descendants: nbdkit, orphaned
 * when its timeout dies first, comes back here and is reaped at once.
 * Left to PID 1, which may reap late (over a second in some
 * containers), every kill would wait for it instead of running I/O.
 *
 * With a power-loss run in external mode, nbdkit gets the undo journal
 * library (powerloss.c) for the spare file, and each start first plays
 * back what the last server wrote to the spare file and never synced.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "powerloss.h"
#include "torture.h"

#define SERVER_LIFETIME "900"   /* seconds, timeout(1) for each server */
#define START_LIMIT_MS 30000

static pid_t wrapper = -1, nbdkit_pid = -1;
static char sock[256], ctl[256], pidfile[256], logfile[256];

const char *
server_socket (void)
{
  return sock;
}

const char *
server_ctl (void)
{
  return ctl;
}

static void
sleep_ms (int ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep (&ts, NULL);
}

static pid_t
read_pidfile (void)
{
  FILE *f = fopen (pidfile, "r");
  int pid = -1;

  if (f) {
    if (fscanf (f, "%d", &pid) != 1)
      pid = -1;
    fclose (f);
  }
  return pid;
}

static bool
serving (void)
{
  struct nbd_handle *h = nbd_create ();
  bool ok;

  if (!h)
    return false;
  ok = nbd_connect_unix (h, sock) == 0;
  nbd_close (h);
  return ok;
}

int
powerloss_undo (const char *file, const char *journal)
{
  FILE *j = fopen (journal, "r");
  struct powerloss_record *r = NULL;
  char **data = NULL;
  size_t n = 0;
  int fd, ret = 0;

  if (!j)
    return 0;
  for (;;) {
    struct powerloss_record one;
    if (fread (&one, sizeof one, 1, j) != 1)
      break;
    r = realloc (r, (n + 1) * sizeof *r);
    data = realloc (data, (n + 1) * sizeof *data);
    data[n] = malloc (one.len ? one.len : 1);
    if (fread (data[n], 1, one.len, j) != one.len)
      break;                    /* torn by the kill: never written */
    r[n++] = one;
  }
  fclose (j);
  fd = open (file, O_WRONLY);
  for (size_t i = n; i-- > 0; ) {
    if (fd == -1 || pwrite (fd, data[i], r[i].len, r[i].offset) !=
        (ssize_t) r[i].len || ftruncate (fd, r[i].old_size) == -1)
      ret = -1;
    free (data[i]);
  }
  if (fd >= 0)
    close (fd);
  free (r);
  free (data);
  if (ret == 0)
    truncate (journal, 0);
  else
    perror (file);
  return ret;
}

/* The undo library: TORTURE_POWERLOSS_LIB, or next to this program.
 * Under the test suite's nbdkit wrapper (tests/wrap/nbdkit) it goes in
 * REMAP_WRAP_PRELOAD, which the wrapper preloads into nbdkit alone,
 * after any sanitizer runtime: in a sanitizer build the library is
 * instrumented too, and timeout and the wrapper's shell, which are
 * not, would refuse to start with it preloaded.
 */
static void
preload_powerloss (const char *spare, const char *journal)
{
  const char *wrap = getenv ("REMAP_WRAP_DIR");
  const char *var = wrap && *wrap ? "REMAP_WRAP_PRELOAD" : "LD_PRELOAD";
  char self[512], lib[600], *slash, *pre;
  const char *old = getenv (var);
  ssize_t n;

  if (getenv ("TORTURE_POWERLOSS_LIB"))
    snprintf (lib, sizeof lib, "%s", getenv ("TORTURE_POWERLOSS_LIB"));
  else {
    n = readlink ("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    slash = strrchr (self, '/');
    if (slash)
      *slash = '\0';
    snprintf (lib, sizeof lib, "%s/.libs/libpowerloss.so", self);
  }
  if (asprintf (&pre, "%s%s%s", lib, old ? " " : "", old ? old : "") == -1)
    _exit (127);
  setenv (var, pre, 1);
  setenv ("TORTURE_POWERLOSS_FILE", spare, 1);
  setenv ("TORTURE_POWERLOSS_JOURNAL", journal, 1);
  setenv ("TORTURE_POWERLOSS_DELAY_US", "2000", 0);
}

int
server_start (struct server_cfg *c)
{
  const char *remap = getenv ("REMAP_FILTER");
  const char *bad = getenv ("BADSECTOR_FILTER");
  char log[256], arg_disk[512], arg_list[512], arg_ctl[512], arg_spare[512];
  char journal[512];
  const char *argv[64];
  int n = 0, fd;

  if (!remap || !bad) {
    fprintf (stderr, "torture: set REMAP_FILTER and BADSECTOR_FILTER\n");
    return -1;
  }
  prctl (PR_SET_CHILD_SUBREAPER, 1);
  c->generation++;
  snprintf (sock, sizeof sock, "%s/nbd.sock", c->dir);
  snprintf (ctl, sizeof ctl, "%s/ctl.sock", c->dir);
  snprintf (pidfile, sizeof pidfile, "%s/nbdkit.pid", c->dir);
  snprintf (log, sizeof log, "%s/nbdkit-%d.log", c->dir, c->generation);
  memcpy (logfile, log, sizeof logfile);
  snprintf (arg_list, sizeof arg_list, "badsector-file=%s", c->list);
  snprintf (arg_ctl, sizeof arg_ctl, "remap-control=%s", ctl);
  snprintf (arg_disk, sizeof arg_disk, "%s", c->disk);
  snprintf (journal, sizeof journal, "%s/spare.undo", c->dir);
  unlink (sock);
  unlink (pidfile);
  if (c->powerloss && c->spare && powerloss_undo (c->spare, journal) == -1)
    return -1;

  argv[n++] = "timeout";
  argv[n++] = SERVER_LIFETIME;
  argv[n++] = "nbdkit";
  argv[n++] = "-f";
  argv[n++] = "-U";
  argv[n++] = sock;
  argv[n++] = "-P";
  argv[n++] = pidfile;
  argv[n++] = "--filter";
  argv[n++] = remap;
  argv[n++] = "--filter";
  argv[n++] = bad;
  if (c->powerloss) {
    /* Writes stay in a cache that dies with the server until a flush:
     * SIGKILL then loses what a power cut would.
     */
    argv[n++] = "--filter=cache";
  }
  for (int i = 0; i < c->nr_extra && n < 50; i++)
    argv[n++] = c->extra[i];
  argv[n++] = "file";
  argv[n++] = arg_disk;
  argv[n++] = arg_list;
  argv[n++] = arg_ctl;
  if (c->spare) {
    snprintf (arg_spare, sizeof arg_spare, "remap-spare=%s", c->spare);
    argv[n++] = arg_spare;
  }
  if (c->powerloss)
    argv[n++] = "cache=writeback";
  argv[n] = NULL;

  wrapper = fork ();
  if (wrapper == -1) {
    perror ("fork");
    return -1;
  }
  if (wrapper == 0) {
    fd = open (log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2 (fd, 1);
      dup2 (fd, 2);
      close (fd);
    }
    if (c->powerloss && c->spare)
      preload_powerloss (c->spare, journal);
    execvp ("timeout", (char **) argv);
    _exit (127);
  }
  for (int waited = 0; waited < START_LIMIT_MS; waited += 20) {
    int st;
    if (waitpid (wrapper, &st, WNOHANG) == wrapper) {
      fprintf (stderr, "torture: nbdkit exited (status %d) instead of "
               "starting; its log is %s\n", WEXITSTATUS (st), log);
      wrapper = -1;
      return -1;
    }
    if (serving ()) {
      nbdkit_pid = read_pidfile ();
      return 0;
    }
    sleep_ms (20);
  }
  fprintf (stderr, "torture: nbdkit did not serve within %d ms (log %s)\n",
           START_LIMIT_MS, log);
  server_kill ();
  return -1;
}

void
server_print_log_tail (int lines)
{
  char cmd[600];

  snprintf (cmd, sizeof cmd, "tail -n %d '%s' >&2", lines, logfile);
  if (system (cmd) != 0)
    fprintf (stderr, "torture: cannot read %s\n", logfile);
}

void
server_kill_from_signal (void)
{
  if (nbdkit_pid > 0)
    kill (nbdkit_pid, SIGKILL);
  if (wrapper > 0)
    kill (wrapper, SIGKILL);
}

void
server_kill (void)
{
  if (nbdkit_pid > 0)
    kill (nbdkit_pid, SIGKILL);
  if (wrapper > 0) {
    kill (wrapper, SIGKILL);
    waitpid (wrapper, NULL, 0);
  }
  /* nbdkit is timeout's child: make sure it is gone before the next
   * server opens the same disk.  Orphaned, it is ours to reap (no
   * child: timeout reaped it first).
   */
  if (nbdkit_pid > 0)
    while (waitpid (nbdkit_pid, NULL, 0) == -1 && errno == EINTR)
      ;
  for (int i = 0; nbdkit_pid > 0 && i < 500 && kill (nbdkit_pid, 0) == 0; i++)
    sleep_ms (10);
  wrapper = nbdkit_pid = -1;
}

int
server_stop (void)
{
  int st = 0;

  if (wrapper <= 0)
    return 0;
  if (nbdkit_pid > 0)
    kill (nbdkit_pid, SIGTERM);
  for (int i = 0; i < 1000; i++) {
    if (waitpid (wrapper, &st, WNOHANG) == wrapper) {
      wrapper = nbdkit_pid = -1;
      return WIFEXITED (st) ? WEXITSTATUS (st) : 128 + WTERMSIG (st);
    }
    sleep_ms (10);
  }
  fprintf (stderr, "torture: nbdkit did not exit 10 s after SIGTERM\n");
  server_kill ();
  return -1;
}

int
server_ctl_cmd (const char *cmd, char *reply, size_t len)
{
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  struct timeval tv = { 20, 0 };
  size_t got = 0;
  int fd, r = -1;

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1)
    return -1;
  if (strlen (ctl) >= sizeof a.sun_path)
    goto out;
  memcpy (a.sun_path, ctl, strlen (ctl) + 1);
  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect (fd, (struct sockaddr *) &a, sizeof a) == -1 ||
      write (fd, cmd, strlen (cmd)) != (ssize_t) strlen (cmd) ||
      write (fd, "\n", 1) != 1)
    goto out;
  while (got + 1 < len) {
    ssize_t k = read (fd, reply + got, len - 1 - got);
    if (k <= 0)
      break;
    got += k;
    if (memchr (reply, '\n', got))
      break;
  }
  reply[got] = '\0';
  r = got > 0 ? 0 : -1;
 out:
  close (fd);
  return r;
}
