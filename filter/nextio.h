/* nbdkit-remap: the plugin below us as a struct remap_io (io.h). */
#ifndef REMAP_NEXTIO_H
#define REMAP_NEXTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "errseq.h"
#include "io.h"

/* The plugin through one context (a connection's, or the shared one),
 * with what nextio.c keeps about its writeback errors.
 */
struct remap_next {
  nbdkit_next *next;
  struct remap_errseq errseq;
};

/* Asks next what it can do, once, and fills io with only what it
 * offers: the server asserts that a filter never calls what it was not
 * offered.  rn lives as long as io.  client: the context of a client's
 * connection, whose flushes report writeback errors to it (see
 * "Writeback errors" in nextio.c).  Returns 0, or -1
 * with the error reported.
 */
extern int remap_io_from_next (nbdkit_next *next, bool client,
                               struct remap_next *rn, struct remap_io *io);

/* Called from .get_ready with the thread model nbdkit settled on
 * (anything but parallel makes every call to the plugin below take one
 * lock) and remap-plugin-cache (see nextio.c).
 */
extern void remap_next_configure (int thread_model, bool plugin_cache);
/* Around a call to the plugin that does not go through a struct
 * remap_io (remap.c's direct next-> calls).  No-ops when parallel.
 */
extern void remap_next_lock (void);
extern void remap_next_unlock (void);

#endif /* REMAP_NEXTIO_H */
