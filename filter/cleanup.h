/* nbdkit-remap: scope-bound cleanup, in the style of nbdkit's
 * CLEANUP_FREE, so that error paths free what they took.
 */
#ifndef REMAP_CLEANUP_H
#define REMAP_CLEANUP_H

#include <stdlib.h>
#include <pthread.h>

static inline void
remap_cleanup_free (void *ptr)
{
  free (* (void **) ptr);
}
#define CLEANUP_FREE __attribute__ ((cleanup (remap_cleanup_free)))

static inline void
remap_cleanup_unlock (pthread_mutex_t **lock)
{
  if (*lock)
    pthread_mutex_unlock (*lock);
}
#define REMAP_CONCAT_(a, b) a##b
#define REMAP_CONCAT(a, b) REMAP_CONCAT_(a, b)
/* Holds a mutex until the end of the enclosing scope. */
#define LOCK_FOR_SCOPE(m)                                               \
  __attribute__ ((cleanup (remap_cleanup_unlock), unused))              \
  pthread_mutex_t *REMAP_CONCAT (scoped_lock_, __LINE__) =              \
    (pthread_mutex_lock (m), (m))

#endif /* REMAP_CLEANUP_H */
