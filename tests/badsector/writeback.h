/* nbdkit-badsector-filter: a page cache for the "writeback" sectors.
 *
 * It behaves like the kernel's over a failing disk: a write to such a
 * sector succeeds into the cache, and reads see the cached bytes;
 * writeback (any flush, or a FUA write) finds the media failing, drops
 * the cached bytes (reads then see the old media contents again) and
 * counts one writeback error per sector.  Like Linux's errseq, each
 * context (connection, or a filter's own context) is told about new
 * errors once, at its next flush or FUA write (badsector.c).
 */
#ifndef BADSECTOR_WRITEBACK_H
#define BADSECTOR_WRITEBACK_H

#include <stdint.h>

#include <nbdkit-filter.h>

/* Puts the part of the write [offset, offset+count) that lies in
 * sectors first..last into the cache (buf NULL: zeros); a sector not
 * cached yet is first filled with what next holds.  Returns 0, or -1
 * with *err set.
 */
extern int wb_store (nbdkit_next *next, uint32_t sector_size,
                     const void *buf, uint32_t count, uint64_t offset,
                     uint64_t first, uint64_t last, int *err);
/* Copies the cached bytes that lie in [offset, offset+count) over buf. */
extern void wb_overlay (uint32_t sector_size, void *buf, uint32_t count,
                        uint64_t offset);
/* Writeback: every cached sector fails and is dropped. */
extern void wb_writeback (void);
/* Writeback errors so far (sectors dropped). */
extern uint64_t wb_errors (void);
extern void wb_free (void);

#endif /* BADSECTOR_WRITEBACK_H */
