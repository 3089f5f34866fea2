/* nbdkit-remap: what the device reports about itself: the status and
 * list replies of the control socket (JSON) and the metrics file
 * (Prometheus text).  remapctl prints the same reports offline.
 */
#ifndef REMAP_REPORT_H
#define REMAP_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device.h"

/* A growable string; 'failed' is set if memory ran out. */
struct remap_buf {
  char *p;
  size_t len, cap;
  bool failed;
};

extern void remap_buf_printf (struct remap_buf *b, const char *fs, ...)
  __attribute__ ((format (printf, 2, 3)));
extern void remap_buf_free (struct remap_buf *b);
/* Appends s as a JSON string literal, quotes included. */
extern void remap_buf_json_string (struct remap_buf *b, const char *s);

/* "ok", "degraded" or "failing": see the man page. */
extern const char *remap_health_verdict (struct remap_device *dev);

extern void remap_report_status (struct remap_device *dev,
                                 struct remap_buf *b);
/* Entries from index 'from' (sectors in order, then retired spares). */
extern void remap_report_list (struct remap_device *dev, uint64_t from,
                               uint64_t count, struct remap_buf *b);
/* dev NULL: the table is not loaded yet (the server waits for its
 * first client), and only the gauge saying so is written.
 */
extern void remap_report_metrics (struct remap_device *dev,
                                  struct remap_buf *b);

#endif /* REMAP_REPORT_H */
