/* nbdkit-remap: lists of sector ranges, and the parsers that produce
 * them: remap-add lists, remap-add-file files and GNU ddrescue
 * mapfiles.  Plain C, so the fuzzers and unit tests can call them.
 */
#ifndef REMAP_RANGES_H
#define REMAP_RANGES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct remap_range {
  uint64_t first, last;         /* inclusive */
};

struct remap_ranges {
  struct remap_range *v;
  size_t len, cap;
};

extern void remap_ranges_free (struct remap_ranges *r);
extern int remap_ranges_append (struct remap_ranges *r,
                                uint64_t first, uint64_t last);

/* "5,7-9,12": sectors and inclusive ranges, comma separated.  On error
 * returns -1 with a reason in why[].
 */
extern int remap_ranges_parse_list (const char *s, struct remap_ranges *r,
                                    char *why, size_t why_len);
/* One sector or range per line; '#' starts a comment. */
extern int remap_ranges_parse_file (FILE *fp, struct remap_ranges *r,
                                    char *why, size_t why_len);
/* A GNU ddrescue mapfile: the bad-sector ('-') areas, as ranges of
 * sector_size sectors (every sector an area touches).
 */
extern int remap_ddrescue_parse (FILE *fp, uint32_t sector_size,
                                 struct remap_ranges *r,
                                 char *why, size_t why_len);

#endif /* REMAP_RANGES_H */
