/* nbdkit-remap unit tests: stand-ins for the logging functions that
 * live in the nbdkit server binary.
 */
#ifndef REMAP_TEST_STUBS_H
#define REMAP_TEST_STUBS_H

/* The last message passed to nbdkit_error, for tests to check. */
extern char stub_last_error[1024];
extern int stub_error_count;
extern void stub_reset (void);

#endif
