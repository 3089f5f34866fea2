/* nbdkit-remap: the operations thread (see control.h).
 *
 * One thread serves every control client with poll(), so a client
 * that connects and never sends, sends garbage, or sends a huge line
 * costs a file descriptor and a buffer, never a thread, and never
 * touches the data path.  The thread never waits on one client: a
 * reply the socket cannot take at once stays queued with the client
 * and goes out as the client reads, within REPLY_SECONDS or the client
 * is dropped.  It stops like the sync thread: flag, wake (a byte down
 * a pipe), join.
 *
 * It starts after the fork, before the table is loaded (the first NBD
 * client's .preconnect loads it), so that the socket answers and the
 * metrics file exists while no client has come.  Until then commands
 * run with no device (see command.h).  remap_control_attach hands over
 * the device under the lock, and the thread reads the pointer under
 * the lock for every command and every metrics write.  The device is
 * freed only after remap_control_stop has joined the thread, and one
 * that failed to load is never attached, so the thread never sees a
 * device that is going away.  The metrics file has three writers (the
 * thread, attach and stop); metrics_lock lets one write at a time, so
 * that an older text never replaces a newer one.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "command.h"
#include "control.h"
#include "metricsfile.h"
#include "report.h"

#define MAX_CLIENTS 16
#define MAX_LINE REMAP_COMMAND_MAX_LINE
#define IDLE_SECONDS 30
#define REPLY_SECONDS 10        /* to take a whole reply, or be dropped */
#define METRICS_INTERVAL 5      /* seconds between periodic writes */

/* A client with a reply not yet taken (out.len > out_done) is polled
 * for POLLOUT only: its next commands wait in buf until the reply has
 * gone, so replies keep their order and a client that does not read
 * holds its own buffer, never the thread.
 */
struct client {
  int fd;
  size_t len;
  time_t last_active;
  struct remap_buf out;
  size_t out_done;
  time_t out_deadline;
  char buf[MAX_LINE + 1];
};

static struct {
  int listen_fd;
  char *socket_path;
  char *metrics_path;
  int wake[2];
  bool cancelled;               /* under lock */
  bool running;
  pthread_mutex_t lock;
  pthread_mutex_t metrics_lock; /* held while the metrics file is written */
  pthread_t thread;
  struct remap_device *dev;     /* under lock: NULL until attached */
  const struct remap_io *origin;  /* under lock */
  struct client *clients[MAX_CLIENTS];
  /* accept() failed for want of descriptors or memory: the socket
   * stays readable, so it is not polled again before this second.
   */
  time_t accept_paused_until;
  time_t metrics_written;
  uint64_t metrics_syncs;
} ctl = { .listen_fd = -1, .wake = { -1, -1 },
          .lock = PTHREAD_MUTEX_INITIALIZER,
          .metrics_lock = PTHREAD_MUTEX_INITIALIZER };

static time_t
now_seconds (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

/* A socket at the path is replaced only when it is certainly stale:
 * a stream socket of this server's user that refuses connections
 * (ECONNREFUSED: nobody listens).  Anything else may be another
 * program's live socket (a datagram socket fails connect too, with
 * another error), or another account's file: it is refused, left in
 * place.  Returns 0 when the path is free.
 */
static int
remove_stale_socket (struct sockaddr_un *addr)
{
  const char *path = addr->sun_path;
  struct stat st;
  int fd, r;

  if (lstat (path, &st) == -1) {
    if (errno == ENOENT)
      return 0;
    nbdkit_error ("remap-control: %s: %m", path);
    return -1;
  }
  if (!S_ISSOCK (st.st_mode)) {
    nbdkit_error ("remap-control: %s exists and is not a socket; remove "
                  "it or choose another path", path);
    return -1;
  }
  if (st.st_uid != geteuid ()) {
    nbdkit_error ("remap-control: %s is a socket of another user (uid %u, "
                  "this server runs as uid %u); remove it if it is stale, "
                  "or choose another path", path, (unsigned) st.st_uid,
                  (unsigned) geteuid ());
    return -1;
  }
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    nbdkit_error ("socket: %m");
    return -1;
  }
  r = connect (fd, (struct sockaddr *) addr, sizeof *addr);
  if (r == -1 && errno == ECONNREFUSED) {
    close (fd);
    nbdkit_debug ("remap-control: removing stale socket %s", path);
    if (unlink (path) == -1 && errno != ENOENT) {
      nbdkit_error ("remap-control: cannot remove the stale socket %s: %m",
                    path);
      return -1;
    }
    return 0;
  }
  if (r == 0)
    nbdkit_error ("remap-control: %s is in use by another running "
                  "server; choose another path", path);
  else
    nbdkit_error ("remap-control: %s is a socket that is not a stale "
                  "control socket (connecting to it: %m); remove it if "
                  "nothing uses it, or choose another path", path);
  close (fd);
  return -1;
}

int
remap_control_listen (const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  mode_t old_mask;
  int fd, r;

  if (strlen (path) >= sizeof addr.sun_path) {
    nbdkit_error ("remap-control: %s: the path is too long for a Unix "
                  "socket (at most %zu bytes)", path,
                  sizeof addr.sun_path - 1);
    return -1;
  }
  strcpy (addr.sun_path, path);
  if (remove_stale_socket (&addr) == -1)
    return -1;

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd == -1) {
    nbdkit_error ("socket: %m");
    return -1;
  }
  /* Owner only (0600), from the moment it exists.  No chmod after
   * bind: it would follow a link that replaced the socket meanwhile.
   */
  old_mask = umask (0177);
  r = bind (fd, (struct sockaddr *) &addr, sizeof addr);
  umask (old_mask);
  if (r == -1 || listen (fd, 64) == -1) {
    nbdkit_error ("remap-control: %s: %m", path);
    close (fd);
    return -1;
  }
  free (ctl.socket_path);
  ctl.socket_path = strdup (path);
  if (ctl.socket_path == NULL) {
    nbdkit_error ("strdup: %m");
    close (fd);
    unlink (path);
    return -1;
  }
  ctl.listen_fd = fd;
  return 0;
}

/* The device and the plugin once attached, NULL before. */
static struct remap_device *
attached (const struct remap_io **origin)
{
  LOCK_FOR_SCOPE (&ctl.lock);
  if (origin)
    *origin = ctl.origin;
  return ctl.dev;
}

static void
drop_client (int i)
{
  close (ctl.clients[i]->fd);
  remap_buf_free (&ctl.clients[i]->out);
  free (ctl.clients[i]);
  ctl.clients[i] = NULL;
}

static bool
reply_pending (const struct client *c)
{
  return c->out_done < c->out.len;
}

/* Sends what the socket takes now, never waiting.  Returns false if
 * the client is gone.
 */
static bool
flush_client (struct client *c)
{
  while (reply_pending (c)) {
    ssize_t n = send (c->fd, c->out.p + c->out_done,
                      c->out.len - c->out_done,
                      MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return true;
    if (n <= 0)
      return false;
    c->out_done += n;
  }
  remap_buf_free (&c->out);
  c->out_done = 0;
  return true;
}

/* A short message to a client about to be dropped: one try. */
static void
send_once (int fd, const char *msg)
{
  if (send (fd, msg, strlen (msg), MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
    nbdkit_debug ("remap-control: could not tell a client: %m");
}

/* Runs complete lines from the client's buffer until one reply cannot
 * be sent at once.  Returns false if the client is to be dropped.
 */
static bool
run_lines (struct client *c)
{
  char *nl;

  while (!reply_pending (c) &&
         (nl = memchr (c->buf, '\n', c->len)) != NULL) {
    *nl = '\0';
    if (memchr (c->buf, '\0', nl - c->buf))
      remap_buf_printf (&c->out, "{\"ok\":false,\"error\":\"the command "
                        "contains a NUL byte\"}");
    else {
      const struct remap_io *origin;
      struct remap_device *dev = attached (&origin);
      remap_control_execute (dev, origin, c->buf, &c->out);
    }
    remap_buf_printf (&c->out, "\n");
    if (c->out.failed) {
      remap_buf_free (&c->out);
      remap_buf_printf (&c->out,
                        "{\"ok\":false,\"error\":\"out of memory\"}\n");
    }
    c->out_done = 0;
    c->out_deadline = now_seconds () + REPLY_SECONDS;
    c->len -= nl + 1 - c->buf;
    memmove (c->buf, nl + 1, c->len);
    if (!flush_client (c))
      return false;
  }
  if (!reply_pending (c) && c->len == MAX_LINE) {
    char msg[80];
    snprintf (msg, sizeof msg, "{\"ok\":false,\"error\":\"line too long "
              "(limit %d bytes)\"}\n", MAX_LINE);
    send_once (c->fd, msg);
    return false;
  }
  return true;
}

/* The client's socket is ready: take its reply, or its commands. */
static void
serve_client (int i)
{
  struct client *c = ctl.clients[i];
  ssize_t n;

  if (reply_pending (c)) {
    if (!flush_client (c) || !run_lines (c))
      drop_client (i);
    return;
  }
  n = recv (c->fd, c->buf + c->len, MAX_LINE - c->len, 0);
  if (n == -1 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    drop_client (i);
    return;
  }
  c->len += n;
  c->last_active = now_seconds ();
  if (!run_lines (c))
    drop_client (i);
}

/* Takes one waiting connection.  Returns false when none is left. */
static bool
accept_client (void)
{
  int fd = accept4 (ctl.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  int i;

  if (fd == -1) {
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
        errno == ENOMEM) {
      if (ctl.accept_paused_until == 0)
        nbdkit_error ("remap-control: cannot accept a control client: %m "
                      "(new control clients wait until it can)");
      ctl.accept_paused_until = now_seconds () + 1;
    }
    return false;
  }
  for (i = 0; i < MAX_CLIENTS && ctl.clients[i]; i++)
    ;
  if (i == MAX_CLIENTS ||
      (ctl.clients[i] = calloc (1, sizeof (struct client))) == NULL) {
    send_once (fd, "{\"ok\":false,\"error\":\"too many control "
               "clients\"}\n");
    close (fd);
    return true;
  }
  ctl.clients[i]->fd = fd;
  ctl.clients[i]->last_active = now_seconds ();
  return true;
}

/* Replaces the metrics file.  Returns -1 with errno set on failure. */
static int
replace_metrics (void)
{
  LOCK_FOR_SCOPE (&ctl.metrics_lock);
  struct remap_buf text = { 0 };
  int r = -1;

  remap_report_metrics (attached (NULL), &text);
  if (text.failed)
    errno = ENOMEM;
  else
    r = remap_metrics_file_write (text.p, text.len);
  remap_buf_free (&text);
  return r;
}

/* While serving a failed write is not worth stopping for (the next
 * one may work): said in the debug log only.
 */
static void
write_metrics (void)
{
  if (replace_metrics () == -1)
    nbdkit_debug ("remap-metrics-file: cannot write %s: %m",
                  ctl.metrics_path);
}

/* After each metadata sync (at most once a second), and every few
 * seconds regardless.
 */
static void
maybe_write_metrics (void)
{
  struct remap_device *dev = attached (NULL);
  struct remap_sync_stats st = { 0 };
  time_t now = now_seconds ();

  if (ctl.metrics_path == NULL)
    return;
  if (dev)
    remap_sync_get_stats (dev->sync, &st);
  if (now - ctl.metrics_written >= METRICS_INTERVAL ||
      (st.syncs != ctl.metrics_syncs && now > ctl.metrics_written)) {
    write_metrics ();
    ctl.metrics_written = now;
    ctl.metrics_syncs = st.syncs;
  }
}

static bool
cancelled (void)
{
  bool r;
  pthread_mutex_lock (&ctl.lock);
  r = ctl.cancelled;
  pthread_mutex_unlock (&ctl.lock);
  return r;
}

static void *
control_thread (void *vp)
{
  bool listening = ctl.listen_fd >= 0;

  (void) vp;
  while (!cancelled ()) {
    struct pollfd pfd[MAX_CLIENTS + 2];
    int map[MAX_CLIENTS + 2];
    int n = 0;
    time_t now = now_seconds ();

    pfd[n++] = (struct pollfd) { .fd = ctl.wake[0], .events = POLLIN };
    if (listening && now >= ctl.accept_paused_until)
      pfd[n++] = (struct pollfd) { .fd = ctl.listen_fd, .events = POLLIN };
    for (int i = 0; i < MAX_CLIENTS; i++) {
      struct client *c = ctl.clients[i];
      if (c == NULL)
        continue;
      if (reply_pending (c) ? now >= c->out_deadline
          : now - c->last_active > IDLE_SECONDS) {
        nbdkit_debug ("remap-control: dropping a client that %s",
                      reply_pending (c) ? "does not take its reply"
                      : "is idle");
        drop_client (i);
        continue;
      }
      map[n] = i;
      pfd[n++] = (struct pollfd) { .fd = c->fd,
                                   .events = reply_pending (c) ? POLLOUT
                                   : POLLIN };
    }
    if (poll (pfd, n, 1000) > 0) {
      for (int k = 1; k < n; k++) {
        if (!pfd[k].revents)
          continue;
        if (pfd[k].fd != ctl.listen_fd) {
          if (ctl.clients[map[k]])
            serve_client (map[k]);
        }
        /* A server refusing to start shuts its listening sockets
         * down (listeners.c), this one too: it would poll ready
         * for ever.  The clients already connected are still served.
         */
        else if (pfd[k].revents & (POLLHUP | POLLERR | POLLNVAL)) {
          nbdkit_debug ("remap-control: the socket was shut down: no "
                        "new control clients");
          listening = false;
        }
        else
          while (accept_client ())
            ;
      }
    }
    maybe_write_metrics ();
  }
  return NULL;
}

int
remap_control_start (const char *metrics_path)
{
  int err;

  if (ctl.listen_fd == -1 && metrics_path == NULL)
    return 0;
  if (metrics_path && (ctl.metrics_path = strdup (metrics_path)) == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  if (pipe2 (ctl.wake, O_CLOEXEC | O_NONBLOCK) == -1) {
    nbdkit_error ("remap: pipe: %m");
    return -1;
  }
  if (ctl.metrics_path && replace_metrics () == -1) {
    nbdkit_error ("remap-metrics-file: cannot write %s: %m",
                  ctl.metrics_path);
    return -1;
  }
  ctl.cancelled = false;
  err = pthread_create (&ctl.thread, NULL, control_thread, NULL);
  if (err) {
    errno = err;
    nbdkit_error ("remap: cannot start the control thread: %m");
    return -1;
  }
  ctl.running = true;
  return 0;
}

/* The metrics file shows the table at once, not at the next periodic
 * write: a collector that looks after the first client was served
 * finds it there.
 */
void
remap_control_attach (struct remap_device *dev,
                      const struct remap_io *origin)
{
  pthread_mutex_lock (&ctl.lock);
  ctl.dev = dev;
  ctl.origin = origin;
  pthread_mutex_unlock (&ctl.lock);
  if (ctl.metrics_path)
    write_metrics ();
}

void
remap_control_stop (void)
{
  if (ctl.running) {
    pthread_mutex_lock (&ctl.lock);
    ctl.cancelled = true;
    pthread_mutex_unlock (&ctl.lock);
    if (write (ctl.wake[1], "x", 1) == -1)
      nbdkit_debug ("remap: waking the control thread: %m");
    pthread_join (ctl.thread, NULL);
    ctl.running = false;
    if (ctl.metrics_path)
      write_metrics ();
  }
  pthread_mutex_lock (&ctl.lock);
  ctl.dev = NULL;
  ctl.origin = NULL;
  pthread_mutex_unlock (&ctl.lock);
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (ctl.clients[i])
      drop_client (i);
  for (int i = 0; i < 2; i++) {
    if (ctl.wake[i] >= 0)
      close (ctl.wake[i]);
    ctl.wake[i] = -1;
  }
  if (ctl.listen_fd >= 0) {
    close (ctl.listen_fd);
    ctl.listen_fd = -1;
    unlink (ctl.socket_path);
  }
  free (ctl.socket_path);
  free (ctl.metrics_path);
  ctl.socket_path = ctl.metrics_path = NULL;
}
