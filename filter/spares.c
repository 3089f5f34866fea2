/* nbdkit-remap: the spare-sector allocator (see spares.h).
 *
 * A bitmap with a hint to the first word that may have a free bit,
 * so allocation is amortised O(1) while spares are used in order, and
 * a freed spare below the hint moves the hint back.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "spares.h"

struct remap_spares {
  pthread_mutex_t lock;
  uint32_t count, used, retired;
  size_t hint;                  /* no free bit in words below this */
  uint64_t *bits;               /* taken: used or retired */
  uint64_t *retired_bits;
};

struct remap_spares *
remap_spares_new (uint32_t count)
{
  struct remap_spares *s = calloc (1, sizeof *s);

  if (s == NULL)
    return NULL;
  s->count = count;
  s->bits = calloc ((count + UINT64_C (63)) / 64 + 1, sizeof (uint64_t));
  s->retired_bits = calloc ((count + UINT64_C (63)) / 64 + 1,
                            sizeof (uint64_t));
  if (s->bits == NULL || s->retired_bits == NULL) {
    free (s->bits);
    free (s->retired_bits);
    free (s);
    return NULL;
  }
  pthread_mutex_init (&s->lock, NULL);
  return s;
}

void
remap_spares_free (struct remap_spares *s)
{
  if (s) {
    pthread_mutex_destroy (&s->lock);
    free (s->bits);
    free (s->retired_bits);
    free (s);
  }
}

static bool
test_and_set (struct remap_spares *s, uint32_t spare)
{
  uint64_t mask = UINT64_C (1) << (spare % 64);
  bool was = s->bits[spare / 64] & mask;

  s->bits[spare / 64] |= mask;
  return was;
}

int
remap_spares_mark_used (struct remap_spares *s, uint32_t spare)
{
  int r = 0;

  pthread_mutex_lock (&s->lock);
  if (spare >= s->count || test_and_set (s, spare)) {
    errno = EINVAL;
    r = -1;
  }
  else
    s->used++;
  pthread_mutex_unlock (&s->lock);
  return r;
}

int
remap_spares_alloc (struct remap_spares *s, uint32_t *spare)
{
  const size_t words = (s->count + UINT64_C (63)) / 64;
  int r = -1;

  pthread_mutex_lock (&s->lock);
  for (size_t w = s->hint; w < words; w++) {
    uint64_t free_bits = ~s->bits[w];
    if (free_bits) {
      uint32_t i = w * 64 + __builtin_ctzll (free_bits);
      if (i >= s->count)
        break;
      test_and_set (s, i);
      s->used++;
      s->hint = w;
      *spare = i;
      r = 0;
      break;
    }
  }
  if (r == -1) {
    s->hint = words;
    errno = ENOSPC;
  }
  pthread_mutex_unlock (&s->lock);
  return r;
}

static bool
is_taken (const struct remap_spares *s, uint32_t spare)
{
  return s->bits[spare / 64] & (UINT64_C (1) << (spare % 64));
}

int
remap_spares_take_run (struct remap_spares *s, uint32_t first,
                       uint32_t count)
{
  int r = 0;

  pthread_mutex_lock (&s->lock);
  if (first > s->count || count > s->count - first)
    r = -1;
  for (uint32_t i = 0; r == 0 && i < count; i++)
    if (is_taken (s, first + i))
      r = -1;
  if (r == 0) {
    for (uint32_t i = 0; i < count; i++)
      test_and_set (s, first + i);
    s->used += count;
  }
  else
    errno = EBUSY;
  pthread_mutex_unlock (&s->lock);
  return r;
}

static void
release_locked (struct remap_spares *s, uint32_t spare)
{
  if (spare < s->count && is_taken (s, spare) &&
      !(s->retired_bits[spare / 64] & (UINT64_C (1) << (spare % 64)))) {
    s->bits[spare / 64] &= ~(UINT64_C (1) << (spare % 64));
    s->used--;
    if (spare / 64 < s->hint)
      s->hint = spare / 64;
  }
}

void
remap_spares_release (struct remap_spares *s, uint32_t spare)
{
  pthread_mutex_lock (&s->lock);
  release_locked (s, spare);
  pthread_mutex_unlock (&s->lock);
}

void
remap_spares_release_run (struct remap_spares *s, uint32_t first,
                          uint32_t count)
{
  pthread_mutex_lock (&s->lock);
  for (uint32_t i = 0; i < count; i++)
    release_locked (s, first + i);
  pthread_mutex_unlock (&s->lock);
}

void
remap_spares_retire (struct remap_spares *s, uint32_t spare)
{
  uint64_t mask = UINT64_C (1) << (spare % 64);

  pthread_mutex_lock (&s->lock);
  if (spare < s->count && !(s->retired_bits[spare / 64] & mask)) {
    if (test_and_set (s, spare))
      s->used--;
    s->retired_bits[spare / 64] |= mask;
    s->retired++;
  }
  pthread_mutex_unlock (&s->lock);
}

int
remap_spares_mark_retired (struct remap_spares *s, uint32_t spare)
{
  int r = 0;

  pthread_mutex_lock (&s->lock);
  if (spare >= s->count || test_and_set (s, spare)) {
    errno = EINVAL;
    r = -1;
  }
  else {
    s->retired_bits[spare / 64] |= UINT64_C (1) << (spare % 64);
    s->retired++;
  }
  pthread_mutex_unlock (&s->lock);
  return r;
}

ssize_t
remap_spares_retired_list (struct remap_spares *s, uint32_t **list)
{
  uint32_t *out;
  size_t n = 0;

  pthread_mutex_lock (&s->lock);
  out = malloc ((s->retired ? s->retired : 1) * sizeof *out);
  if (out == NULL) {
    pthread_mutex_unlock (&s->lock);
    errno = ENOMEM;
    return -1;
  }
  for (size_t w = 0; n < s->retired && w <= s->count / 64; w++) {
    uint64_t bits = s->retired_bits[w];
    while (bits) {
      out[n++] = w * 64 + __builtin_ctzll (bits);
      bits &= bits - 1;
    }
  }
  pthread_mutex_unlock (&s->lock);
  *list = out;
  return n;
}

uint32_t
remap_spares_retired (struct remap_spares *s)
{
  uint32_t n;

  pthread_mutex_lock (&s->lock);
  n = s->retired;
  pthread_mutex_unlock (&s->lock);
  return n;
}

uint32_t
remap_spares_used (struct remap_spares *s)
{
  uint32_t n;

  pthread_mutex_lock (&s->lock);
  n = s->used;
  pthread_mutex_unlock (&s->lock);
  return n;
}

uint32_t
remap_spares_total (const struct remap_spares *s)
{
  return s->count;
}
