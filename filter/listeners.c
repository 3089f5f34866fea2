/* nbdkit-remap: refusing the clients of a server that will not start
 * (see listeners.h).
 *
 * nbdkit --run binds its sockets, then forks: the parent runs the
 * command and waits for it, the child serves.  The filter's after_fork
 * and the first connection run in the child, so a refusal there ends
 * the child only: the parent still holds the listening sockets, the
 * kernel still queues connections on them, and the command's client
 * waits for a greeting that never comes.  shutdown(2) acts on the
 * socket, not the descriptor, so the child can stop the listening that
 * the parent shares: on Linux a later connect() is refused
 * (ECONNREFUSED) and accept() hands out what was queued, then fails
 * (EINVAL) instead of waiting.
 *
 * Only the --run parent is a process we may do this to: under socket
 * activation the sockets are systemd's, and must keep listening for
 * the next start.  The --run parent is the process that ran
 * .get_ready (nbdkit forks for --run after it), so it is told apart by
 * the PID noted there.  (Not by /proc/PPID/exe: after nbdkit -u drops
 * privileges, the parent, still root, may not be looked at, and the
 * command's client would wait forever.)
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "listeners.h"

static pid_t server_pid;        /* the process that ran .get_ready */

void
remap_listeners_note_server (void)
{
  server_pid = getpid ();
}

/* True if our parent process is the nbdkit that forked us. */
static bool
parent_is_nbdkit (void)
{
  return server_pid != 0 && getppid () == server_pid;
}

static bool
is_listening_inet_or_unix (int fd)
{
  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  int listening = 0;
  socklen_t optlen = sizeof listening;

  if (getsockopt (fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) == -1 ||
      !listening ||
      getsockname (fd, (struct sockaddr *) &addr, &len) == -1)
    return false;
  /* The families whose shut-down accept() fails rather than waits. */
  return addr.ss_family == AF_UNIX || addr.ss_family == AF_INET ||
    addr.ss_family == AF_INET6;
}

void
remap_stop_listening (void)
{
  DIR *dir;
  struct dirent *d;

  if (!parent_is_nbdkit ())
    return;
  dir = opendir ("/proc/self/fd");
  if (dir == NULL) {
    nbdkit_debug ("remap: /proc/self/fd: %m");
    return;
  }
  while ((d = readdir (dir)) != NULL) {
    char *end;
    long fd = strtol (d->d_name, &end, 10);
    int c;

    if (*end || end == d->d_name || fd == dirfd (dir) ||
        !is_listening_inet_or_unix (fd))
      continue;
    nbdkit_debug ("remap: refusing the clients of listening socket %ld", fd);
    if (shutdown (fd, SHUT_RDWR) == -1) {
      nbdkit_debug ("remap: shutdown: %m");
      continue;
    }
    while ((c = accept4 (fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
      close (c);
  }
  closedir (dir);
}
