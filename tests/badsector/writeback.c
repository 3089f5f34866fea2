/* nbdkit-badsector-filter: the page cache of the "writeback" sectors
 * (see writeback.h).  A test holds a handful of such sectors, so the
 * cache is an unsorted array searched in full.
 */

#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "writeback.h"

struct cached {
  uint64_t sector;
  unsigned char *data;          /* one sector */
};

/* Held across the reads that fill a new entry, so that two writers of
 * one sector do not both fill it.
 */
static pthread_mutex_t wb_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cached *cache;
static size_t nr_cached, cap_cached;
static uint64_t errors;

static struct cached *
find_locked (uint64_t sector)
{
  for (size_t i = 0; i < nr_cached; i++)
    if (cache[i].sector == sector)
      return &cache[i];
  return NULL;
}

static struct cached *
add_locked (nbdkit_next *next, uint32_t ss, uint64_t sector, int *err)
{
  unsigned char *data;

  if (nr_cached == cap_cached) {
    size_t ncap = cap_cached ? 2 * cap_cached : 16;
    struct cached *p = realloc (cache, ncap * sizeof *p);
    if (p == NULL) {
      *err = ENOMEM;
      return NULL;
    }
    cache = p;
    cap_cached = ncap;
  }
  data = malloc (ss);
  if (data == NULL) {
    *err = ENOMEM;
    return NULL;
  }
  if (next->pread (next, data, ss, sector * ss, 0, err) == -1) {
    free (data);
    return NULL;
  }
  cache[nr_cached] = (struct cached) { .sector = sector, .data = data };
  return &cache[nr_cached++];
}

int
wb_store (nbdkit_next *next, uint32_t ss, const void *buf, uint32_t count,
          uint64_t offset, uint64_t first, uint64_t last, int *err)
{
  const uint64_t end = offset + count;
  int r = 0;

  pthread_mutex_lock (&wb_lock);
  for (uint64_t s = first; s <= last; s++) {
    uint64_t from = s * ss > offset ? s * ss : offset;
    uint64_t to = (s + 1) * ss < end ? (s + 1) * ss : end;
    struct cached *c = find_locked (s);

    if (c == NULL && (c = add_locked (next, ss, s, err)) == NULL) {
      r = -1;
      break;
    }
    if (buf)
      memcpy (c->data + (from - s * ss),
              (const unsigned char *) buf + (from - offset), to - from);
    else
      memset (c->data + (from - s * ss), 0, to - from);
  }
  pthread_mutex_unlock (&wb_lock);
  return r;
}

void
wb_overlay (uint32_t ss, void *buf, uint32_t count, uint64_t offset)
{
  const uint64_t end = offset + count;

  pthread_mutex_lock (&wb_lock);
  for (size_t i = 0; i < nr_cached; i++) {
    uint64_t sstart = cache[i].sector * ss;
    uint64_t from = sstart > offset ? sstart : offset;
    uint64_t to = sstart + ss < end ? sstart + ss : end;

    if (from < to)
      memcpy ((unsigned char *) buf + (from - offset),
              cache[i].data + (from - sstart), to - from);
  }
  pthread_mutex_unlock (&wb_lock);
}

void
wb_writeback (void)
{
  pthread_mutex_lock (&wb_lock);
  for (size_t i = 0; i < nr_cached; i++) {
    nbdkit_debug ("badsector: writeback of sector %" PRIu64 " failed: "
                  "its cached data is dropped", cache[i].sector);
    free (cache[i].data);
    errors++;
  }
  nr_cached = 0;
  pthread_mutex_unlock (&wb_lock);
}

uint64_t
wb_errors (void)
{
  uint64_t n;

  pthread_mutex_lock (&wb_lock);
  n = errors;
  pthread_mutex_unlock (&wb_lock);
  return n;
}

void
wb_free (void)
{
  for (size_t i = 0; i < nr_cached; i++)
    free (cache[i].data);
  free (cache);
  cache = NULL;
  nr_cached = cap_cached = 0;
}
