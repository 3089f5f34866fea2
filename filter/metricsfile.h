/* nbdkit-remap: the metrics file (remap-metrics-file), replaced whole
 * through a unique temporary file and rename, never through a name
 * that another account could have planted (see metricsfile.c).
 */
#ifndef REMAP_METRICSFILE_H
#define REMAP_METRICSFILE_H

#include <stddef.h>

/* Before the fork: opens the directory of path, where every later
 * write goes whatever its name comes to refer to, refuses a target
 * that exists and is not a regular file, and checks that a temporary
 * file can be made next to it.  Reports errors with nbdkit_error.
 */
extern int remap_metrics_file_check (const char *path);

/* Replaces the file checked above with text (mode 0644).  Returns -1
 * with errno set (ELOOP or EEXIST if the target is not a regular
 * file, left alone).
 */
extern int remap_metrics_file_write (const char *text, size_t len);

/* Closes the directory (at unload). */
extern void remap_metrics_file_close (void);

#endif /* REMAP_METRICSFILE_H */
