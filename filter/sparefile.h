/* nbdkit-remap: the external spare file (remap-spare=FILE) as a
 * struct remap_io.
 */
#ifndef REMAP_SPAREFILE_H
#define REMAP_SPAREFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"

struct remap_sparefile {
  int fd;
  bool created;                 /* we made it: remove it if unused */
  struct remap_io io;
};

/* Opens (creating if missing) and locks the file, so that no second
 * server or tool writes the same metadata.  Reports errors with
 * nbdkit_error.
 */
extern int remap_sparefile_open (struct remap_sparefile *f, const char *path,
                                 bool readonly);
extern int remap_sparefile_size (struct remap_sparefile *f, uint64_t *size);
/* Closes it, removing it if we created it and remove_if_created. */
extern void remap_sparefile_close (struct remap_sparefile *f,
                                   const char *path, bool remove_if_created);

#endif /* REMAP_SPAREFILE_H */
