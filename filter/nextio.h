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

#endif /* REMAP_NEXTIO_H */
