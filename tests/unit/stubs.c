/* nbdkit-remap unit tests: nbdkit_error and nbdkit_debug, which the
 * core calls and the server normally provides.  Set REMAP_TEST_VERBOSE
 * to see them.
 */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <nbdkit-filter.h>

#include "stubs.h"

char stub_last_error[1024];
int stub_error_count;
static pthread_mutex_t stub_lock = PTHREAD_MUTEX_INITIALIZER;

void
stub_reset (void)
{
  pthread_mutex_lock (&stub_lock);
  stub_last_error[0] = '\0';
  stub_error_count = 0;
  pthread_mutex_unlock (&stub_lock);
}

void
nbdkit_error (const char *fs, ...)
{
  va_list args;

  pthread_mutex_lock (&stub_lock);
  va_start (args, fs);
  vsnprintf (stub_last_error, sizeof stub_last_error, fs, args);
  va_end (args);
  stub_error_count++;
  if (getenv ("REMAP_TEST_VERBOSE"))
    fprintf (stderr, "error: %s\n", stub_last_error);
  pthread_mutex_unlock (&stub_lock);
}

void
nbdkit_debug (const char *fs, ...)
{
  va_list args;

  if (getenv ("REMAP_TEST_VERBOSE")) {
    va_start (args, fs);
    fputs ("debug: ", stderr);
    vfprintf (stderr, fs, args);
    fputc ('\n', stderr);
    va_end (args);
  }
}
