/* nbdkit-remap: the plugin below us as a struct remap_io (io.h). */
#ifndef REMAP_NEXTIO_H
#define REMAP_NEXTIO_H

#include <nbdkit-filter.h>

#include "io.h"

/* Asks next what it can do, once, and fills io with only what it
 * offers: the server asserts that a filter never calls what it was not
 * offered.  Returns 0, or -1 with the error reported.
 */
extern int remap_io_from_next (nbdkit_next *next, struct remap_io *io);

/* Called from .get_ready with the thread model nbdkit settled on:
 * anything but parallel makes every call to the plugin below take one
 * lock (see nextio.c).
 */
extern void remap_next_set_thread_model (int thread_model);
/* Around a call to the plugin that does not go through a struct
 * remap_io (remap.c's direct next-> calls).  No-ops when parallel.
 */
extern void remap_next_lock (void);
extern void remap_next_unlock (void);

#endif /* REMAP_NEXTIO_H */
