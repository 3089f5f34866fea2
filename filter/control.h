/* nbdkit-remap: the operations thread: the live control socket
 * (remap-control=SOCKET) and the metrics file (remap-metrics-file).
 */
#ifndef REMAP_CONTROL_H
#define REMAP_CONTROL_H

#include "device.h"
#include "io.h"
#include "report.h"

/* Checks the socket path and binds it (mode 0600), replacing only a
 * stale socket of this user (one that refuses connections) left by a
 * server that died.  Called before the fork, so that errors reach the
 * terminal.
 */
extern int remap_control_listen (const char *path);

/* Starts the thread, once the device is loaded.  origin is the plugin
 * outside any connection, for the remap and unmap commands.
 */
extern int remap_control_start (struct remap_device *dev,
                                 const struct remap_io *origin,
                                 const char *metrics_path);

/* Cancel flag, wake-up through a pipe, join: never waits for a client.
 * Removes the socket and writes the metrics one last time.
 */
extern void remap_control_stop (void);

/* One command line in, one JSON reply out (no newline).  The protocol
 * itself, without sockets, for the thread and the fuzzer.
 */
extern void remap_control_execute (struct remap_device *dev,
                                   const struct remap_io *origin,
                                   const char *line, struct remap_buf *reply);

#endif /* REMAP_CONTROL_H */
