/* nbdkit-remap: the control protocol (remap-control=SOCKET) without
 * its socket: one command line in, one JSON reply out.  Used by the
 * control thread (control.c) and by the fuzzer.
 */
#ifndef REMAP_COMMAND_H
#define REMAP_COMMAND_H

#include "device.h"
#include "io.h"
#include "report.h"

/* The longest command line, newline excluded. */
#define REMAP_COMMAND_MAX_LINE 4096

/* Runs one command line and appends its reply (no newline) to reply.
 * dev is NULL until the table is loaded, which happens when the first
 * NBD client connects: then status says so, help works, and the
 * commands that need the table fail saying why.  origin is the plugin
 * outside any connection, for remap and unmap.
 */
extern void remap_control_execute (struct remap_device *dev,
                                   const struct remap_io *origin,
                                   const char *line, struct remap_buf *reply);

#endif /* REMAP_COMMAND_H */
