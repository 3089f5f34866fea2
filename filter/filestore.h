/* nbdkit-remap: a file or block device as a struct remap_io: the
 * filter's external spare file, and remapctl's disk images and spare
 * files.
 */
#ifndef REMAP_FILESTORE_H
#define REMAP_FILESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "errseq.h"
#include "io.h"

struct remap_file {
  int fd;
  bool created;                 /* we made it: remove it if unused */
  uint64_t size;                /* at open time */
  struct remap_io io;
  struct remap_errseq errseq;   /* its writeback errors */
};

enum {
  REMAP_FILE_WRITE = 1,         /* read-write, locked exclusively */
  REMAP_FILE_CREATE = 2,        /* create it if missing (with WRITE) */
  REMAP_FILE_SPARE = 4,         /* a spare file: it must be private to
                                   this user, and format may empty it */
};

/* Opens a regular file or block device and, for writing, locks it
 * (flock), so that no second server or tool writes the same metadata.
 * A spare file is opened without following a link that another
 * account could have placed, and refused unless it is private (see
 * filestore.c).  Reports errors with nbdkit_error, prefixed by what (a
 * parameter name, or a tool's).
 */
extern int remap_file_open (struct remap_file *f, const char *what,
                            const char *path, unsigned flags);
/* Closes it, removing it if we created it and remove_if_created. */
extern void remap_file_close (struct remap_file *f, const char *path,
                              bool remove_if_created);

#endif /* REMAP_FILESTORE_H */
