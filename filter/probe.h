/* nbdkit-remap: may a store with no remap metadata be formatted
 * without remap-format=yes?  And if not, what is on it?
 *
 * The rule: a disk (internal mode) is formatted on its own only when
 * the plugin's extents prove every byte of it is a hole or zero; a
 * spare file (external mode) only when it is new, empty or reads as
 * zeros.  Everything else is refused with a message naming what was
 * found: remap metadata left behind by a grow or a shrink, a
 * filesystem, partition table or LVM signature (libblkid), or
 * unknown data.  No probe reads the whole disk, and a sector that
 * fails to read is skipped, never fatal: a failing disk is the normal
 * case here.
 */
#ifndef REMAP_PROBE_H
#define REMAP_PROBE_H

#include <stdbool.h>
#include <stdint.h>

#include "device.h"
#include "format.h"
#include "io.h"
#include "metadata.h"

/* Whether the plugin's extents say [0, size) is all holes or zeros.
 * Sets *known false when the store reports no extents.  Reads nothing.
 */
extern int remap_probe_blank (const struct remap_io *store, uint64_t size,
                              bool *blank, bool *known, int *err);

/* For a store where no metadata was found: 0 if it may be formatted,
 * else -1 after an nbdkit_error that says what is there and the ways
 * out.
 */
extern int remap_probe_may_format (const struct remap_options *opt,
                                   const struct remap_io *store,
                                   uint64_t store_size, uint64_t disk_size,
                                   uint32_t sector_size, uint32_t spares);

/* True if a load found nothing it could read: every copy it looked
 * for was unreadable, none had our magic.  On a disk the extents
 * prove blank, that is an unreadable sector, not metadata.
 */
extern bool remap_probe_nothing_readable (const struct remap_load_result *lr);

/* Calls found (opaque, offset, header) for every valid header of an
 * internal region at a 512-byte boundary of [from, to), upwards,
 * skipping spans the extents call zero and sectors that cannot be
 * read.  progress (may be NULL) is called after each MiB with the
 * bytes done and the total.  Returns the number of headers found.
 */
extern uint64_t remap_scan_headers (const struct remap_io *store,
                                    uint64_t from, uint64_t to,
                                    void (*found) (void *opaque,
                                                   uint64_t offset,
                                                   const struct remap_header *h),
                                    void (*progress) (void *opaque,
                                                      uint64_t done,
                                                      uint64_t total),
                                    void *opaque);

#endif /* REMAP_PROBE_H */
