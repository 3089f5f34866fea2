/* nbdkit-remap: the operations thread: the live control socket
 * (remap-control=SOCKET) and the metrics file (remap-metrics-file).
 * The commands themselves are in command.h.
 */
#ifndef REMAP_CONTROL_H
#define REMAP_CONTROL_H

#include "device.h"
#include "io.h"

/* Checks the socket path and binds it (mode 0600), replacing only a
 * stale socket of this user (one that refuses connections) left by a
 * server that died.  Called before the fork, so that errors reach the
 * terminal.
 */
extern int remap_control_listen (const char *path);

/* Writes the metrics file and starts the thread, after the fork and
 * before the table is loaded: until remap_control_attach, status says
 * that the table is loaded when the first client connects, and the
 * metrics file says that it is not loaded yet.
 */
extern int remap_control_start (const char *metrics_path);

/* Hands the loaded device to the thread, and writes the metrics file
 * with it.  origin is the plugin outside any connection, for the remap
 * and unmap commands.  Both must stay valid until remap_control_stop
 * has returned; attach only a device that will not be freed before.
 */
extern void remap_control_attach (struct remap_device *dev,
                                  const struct remap_io *origin);

/* Cancel flag, wake-up through a pipe, join: never waits for a client.
 * Writes the metrics one last time, removes the socket and forgets the
 * device.
 */
extern void remap_control_stop (void);

#endif /* REMAP_CONTROL_H */
