/* nbdkit-remap torture test: the undo journal of powerloss.c, shared
 * with the program that plays it back (server.c).
 *
 * The journal is a sequence of records, each followed by LEN bytes:
 * what the file held at OFFSET before a pwrite, and the file's size
 * then (a write past the end is undone by truncating back).
 */
#ifndef TORTURE_POWERLOSS_H
#define TORTURE_POWERLOSS_H

#include <stdbool.h>
#include <stdint.h>

struct powerloss_record {
  uint64_t offset, len, old_size;
};

/* Plays JOURNAL backwards onto FILE, then empties it. */
int powerloss_undo (const char *file, const char *journal);

#endif /* TORTURE_POWERLOSS_H */
