/* nbdkit-remap: the in-memory remap table (see table.h).
 *
 * Lookups binary-search a sorted array under the read side of a
 * readers-writer lock.  In front of that, a summary bitmap with one
 * bit per chunk of sectors is read with atomic loads and no lock, so
 * that requests which miss every entry never touch the lock at all.
 * Bits are set before an entry becomes visible and cleared only when
 * a chunk has no entry left.
 *
 * A binary search of a million 16-byte entries misses the cache on
 * most of its last steps, so the search runs first over a "fence"
 * array holding the first sector of every block of FENCE_BLOCK
 * entries (8 bytes per 16 entries, small enough to stay in cache),
 * then inside one block.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "table.h"

/* Keep the summary under 16 MiB: exact (one bit per sector) up to
 * 2^27 sectors, coarser beyond.
 */
#define SUMMARY_MAX_BITS (UINT64_C (1) << 27)
#define FENCE_BLOCK 16

struct remap_table {
  pthread_rwlock_t lock;
  struct remap_entry *entries;  /* sorted by sector */
  size_t len, cap;
  uint64_t *fence;              /* fence[b] = entries[b*FENCE_BLOCK].sector */
  size_t nr_entries_hint;       /* atomic copy of len for the fast path */
  uint64_t nr_sectors;
  unsigned summary_shift;       /* sectors per bit = 1 << shift */
  uint64_t *summary;
  size_t summary_words;
};

struct remap_table *
remap_table_new (uint64_t nr_sectors)
{
  struct remap_table *t = calloc (1, sizeof *t);
  uint64_t bits;

  if (t == NULL)
    return NULL;
  t->nr_sectors = nr_sectors;
  while (((nr_sectors + (UINT64_C (1) << t->summary_shift) - 1)
          >> t->summary_shift) > SUMMARY_MAX_BITS)
    t->summary_shift++;
  bits = (nr_sectors >> t->summary_shift) + 1;
  t->summary_words = (bits + 63) / 64;
  t->summary = calloc (t->summary_words, sizeof (uint64_t));
  /* Readers hold the lock only for a binary search and never nest, so
   * a waiting writer may go first: a steady stream of lookups must not
   * hold off a remap forever.
   */
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init (&attr);
  pthread_rwlockattr_setkind_np (&attr,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  if (t->summary == NULL || pthread_rwlock_init (&t->lock, &attr) != 0) {
    pthread_rwlockattr_destroy (&attr);
    free (t->summary);
    free (t);
    return NULL;
  }
  pthread_rwlockattr_destroy (&attr);
  return t;
}

void
remap_table_free (struct remap_table *t)
{
  if (t) {
    pthread_rwlock_destroy (&t->lock);
    free (t->entries);
    free (t->fence);
    free (t->summary);
    free (t);
  }
}

bool
remap_table_may_touch (const struct remap_table *t,
                       uint64_t first, uint64_t last)
{
  uint64_t c0, c1;

  if (__atomic_load_n (&t->nr_entries_hint, __ATOMIC_ACQUIRE) == 0)
    return false;
  c0 = first >> t->summary_shift;
  c1 = last >> t->summary_shift;
  for (uint64_t w = c0 / 64; w <= c1 / 64 && w < t->summary_words; w++) {
    uint64_t word = __atomic_load_n (&t->summary[w], __ATOMIC_ACQUIRE);
    if (w == c0 / 64)
      word &= ~UINT64_C (0) << (c0 % 64);
    if (w == c1 / 64 && c1 % 64 != 63)
      word &= (UINT64_C (1) << (c1 % 64 + 1)) - 1;
    if (word)
      return true;
  }
  return false;
}

/* Index of the first entry with sector >= s.  Caller holds the lock. */
static size_t
lower_bound (const struct remap_table *t, uint64_t s)
{
  size_t blocks = (t->len + FENCE_BLOCK - 1) / FENCE_BLOCK;
  size_t lo = 0, hi = blocks;

  /* The last block whose first sector is <= s... */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t->fence[mid] <= s)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0)
    return 0;
  /* ... holds the answer, or the answer is the next block's first. */
  lo = (lo - 1) * FENCE_BLOCK;
  hi = lo + FENCE_BLOCK < t->len ? lo + FENCE_BLOCK : t->len;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t->entries[mid].sector < s)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

bool
remap_table_next (struct remap_table *t, uint64_t first, uint64_t last,
                  struct remap_entry *entry)
{
  bool found = false;
  size_t i;

  pthread_rwlock_rdlock (&t->lock);
  i = lower_bound (t, first);
  if (i < t->len && t->entries[i].sector <= last) {
    *entry = t->entries[i];
    found = true;
  }
  pthread_rwlock_unlock (&t->lock);
  return found;
}

bool
remap_table_lookup (struct remap_table *t, uint64_t sector,
                    struct remap_entry *entry)
{
  return remap_table_next (t, sector, sector, entry);
}

static void
summary_set (struct remap_table *t, uint64_t sector)
{
  uint64_t c = sector >> t->summary_shift;
  __atomic_fetch_or (&t->summary[c / 64], UINT64_C (1) << (c % 64),
                     __ATOMIC_RELEASE);
}

/* Clears the summary bit of a chunk that no longer holds an entry.
 * Caller holds the write lock.
 */
static void
summary_clear_if_empty (struct remap_table *t, uint64_t sector)
{
  uint64_t c = sector >> t->summary_shift;
  uint64_t chunk_first = c << t->summary_shift;
  size_t i = lower_bound (t, chunk_first);

  if (i < t->len && (t->entries[i].sector >> t->summary_shift) == c)
    return;
  __atomic_fetch_and (&t->summary[c / 64], ~(UINT64_C (1) << (c % 64)),
                      __ATOMIC_RELEASE);
}

static int
reserve (struct remap_table *t, size_t want)
{
  struct remap_entry *p;
  uint64_t *f;
  size_t cap;

  if (want <= t->cap)
    return 0;
  cap = t->cap ? t->cap : 64;
  while (cap < want)
    cap *= 2;
  p = realloc (t->entries, cap * sizeof *p);
  if (p == NULL)
    return -1;
  t->entries = p;
  f = realloc (t->fence, (cap / FENCE_BLOCK + 1) * sizeof *f);
  if (f == NULL)
    return -1;
  t->fence = f;
  t->cap = cap;
  return 0;
}

/* Entries from index i on moved: refresh the fences that cover them. */
static void
refresh_fences (struct remap_table *t, size_t i)
{
  for (size_t b = i / FENCE_BLOCK; b * FENCE_BLOCK < t->len; b++)
    t->fence[b] = t->entries[b * FENCE_BLOCK].sector;
}

int
remap_table_insert (struct remap_table *t, const struct remap_entry *entry)
{
  size_t i;
  int r = 0;

  if (entry->sector >= t->nr_sectors) {
    errno = ERANGE;
    return -1;
  }
  pthread_rwlock_wrlock (&t->lock);
  i = lower_bound (t, entry->sector);
  if (i < t->len && t->entries[i].sector == entry->sector)
    t->entries[i] = *entry;
  else if (reserve (t, t->len + 1) == -1) {
    errno = ENOMEM;
    r = -1;
  }
  else {
    summary_set (t, entry->sector);
    memmove (&t->entries[i+1], &t->entries[i],
             (t->len - i) * sizeof t->entries[0]);
    t->entries[i] = *entry;
    t->len++;
    refresh_fences (t, i);
    __atomic_store_n (&t->nr_entries_hint, t->len, __ATOMIC_RELEASE);
  }
  pthread_rwlock_unlock (&t->lock);
  return r;
}

int
remap_table_load (struct remap_table *t,
                  const struct remap_entry *entries, size_t n)
{
  int r = 0;

  for (size_t i = 0; i < n; i++) {
    if (entries[i].sector >= t->nr_sectors ||
        (i > 0 && entries[i].sector <= entries[i-1].sector)) {
      errno = ERANGE;
      return -1;
    }
  }
  pthread_rwlock_wrlock (&t->lock);
  if (reserve (t, n) == -1) {
    errno = ENOMEM;
    r = -1;
  }
  else {
    memset (t->summary, 0, t->summary_words * sizeof (uint64_t));
    if (n > 0)                  /* an empty table has no array yet */
      memcpy (t->entries, entries, n * sizeof *entries);
    t->len = n;
    refresh_fences (t, 0);
    for (size_t i = 0; i < n; i++)
      summary_set (t, entries[i].sector);
    __atomic_store_n (&t->nr_entries_hint, t->len, __ATOMIC_RELEASE);
  }
  pthread_rwlock_unlock (&t->lock);
  return r;
}

bool
remap_table_remove (struct remap_table *t, uint64_t sector)
{
  bool found = false;
  size_t i;

  pthread_rwlock_wrlock (&t->lock);
  i = lower_bound (t, sector);
  if (i < t->len && t->entries[i].sector == sector) {
    memmove (&t->entries[i], &t->entries[i+1],
             (t->len - i - 1) * sizeof t->entries[0]);
    t->len--;
    refresh_fences (t, i);
    __atomic_store_n (&t->nr_entries_hint, t->len, __ATOMIC_RELEASE);
    summary_clear_if_empty (t, sector);
    found = true;
  }
  pthread_rwlock_unlock (&t->lock);
  return found;
}

size_t
remap_table_count (struct remap_table *t)
{
  size_t n;

  pthread_rwlock_rdlock (&t->lock);
  n = t->len;
  pthread_rwlock_unlock (&t->lock);
  return n;
}

ssize_t
remap_table_snapshot (struct remap_table *t, uint32_t state_mask,
                      struct remap_entry **entries)
{
  size_t n = 0;
  struct remap_entry *out;

  pthread_rwlock_rdlock (&t->lock);
  out = malloc ((t->len ? t->len : 1) * sizeof *out);
  if (out == NULL) {
    pthread_rwlock_unlock (&t->lock);
    errno = ENOMEM;
    return -1;
  }
  for (size_t i = 0; i < t->len; i++)
    if (t->entries[i].state & state_mask)
      out[n++] = t->entries[i];
  pthread_rwlock_unlock (&t->lock);
  *entries = out;
  return n;
}

size_t
remap_table_memory (struct remap_table *t)
{
  size_t bytes;

  pthread_rwlock_rdlock (&t->lock);
  bytes = sizeof *t + t->cap * sizeof t->entries[0] +
    (t->cap / FENCE_BLOCK + 1) * sizeof t->fence[0] +
    t->summary_words * sizeof (uint64_t);
  pthread_rwlock_unlock (&t->lock);
  return bytes;
}
