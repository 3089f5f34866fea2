/* nbdkit-remap fuzzers: helpers shared by the harnesses. */
#ifndef REMAP_FUZZ_COMMON_H
#define REMAP_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>

/* True if s[0..len) is exactly one valid JSON value (RFC 8259), with
 * optional surrounding white space.
 */
extern bool fuzz_json_valid (const char *s, size_t len);

/* Aborts with a message: what libFuzzer reports as a crash. */
extern void fuzz_fail (const char *fmt, ...)
  __attribute__ ((noreturn, format (printf, 1, 2)));

#endif
