/* nbdkit-remap: the in-memory remap table (see table.h).
 *
 * The entries, sorted by sector, live in pages of PAGE_ENTRIES, and an
 * index over them (a static B+ tree, see struct view) leads a lookup
 * to the block of NODE entries that holds its answer through a few
 * cache lines.  An insert or remove moves entries within one page and
 * rotates the pages after it (see struct view), then refreshes the
 * index: no copy of the whole table.
 *
 * Readers take no lock and write nothing shared: a lock on every
 * request bounces its cache line between cores, and its atomic
 * read-modify-write also keeps the CPU from overlapping one lookup's
 * cache misses with the next's.  Instead writers, serialized by a
 * mutex, make a sequence counter odd while they change anything, and
 * a reader that saw it odd, or changed by the time it is done,
 * retries.  So a reader may run into arrays that a writer is
 * rewriting: every word it loads is written with atomic stores (no
 * torn reads, no data race for the C memory model or ThreadSanitizer),
 * and no memory it may hold is freed before remap_table_free: pages
 * never are, and a view replaced when the table grows is kept (the
 * replaced ones together are smaller than the current one).
 *
 * In front of that, a summary bitmap with one bit per chunk of sectors
 * is read with atomic loads, so that requests which miss every entry
 * do not search at all.  Bits are set before an entry becomes visible
 * and cleared only when a chunk has no entry left.
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
/* Keys per index node (two cache lines), and entries per block. */
#define NODE 16
/* Levels of the index: enough for NODE^MAX_LEVELS blocks. */
#define MAX_LEVELS 16
/* Entries per page (16 KiB): small enough for a table of a thousand
 * entries, a multiple of NODE so that a block lies in one page, and a
 * power of two for the rotation (see struct view).
 */
#define PAGE_ENTRIES 1024
#define CACHE_LINE 64

/* The sequence counter's fences.  Readers load the table with relaxed
 * atomics, then the fence keeps the counter's second load after them;
 * writers make the counter odd, then the fence keeps their relaxed
 * stores after it.  ThreadSanitizer does not model fences (gcc warns)
 * and needs none: it sees no race between atomic accesses, and the
 * counter's acquire and release give it the order of everything else.
 * (Relaxed atomics are also what keeps it fast there: an acquire or
 * release on every word would cost it a clock per address.)
 */
#ifdef __SANITIZE_THREAD__
#define read_fence() ((void) 0)
#define write_fence() ((void) 0)
#else
#define read_fence() __atomic_thread_fence (__ATOMIC_ACQUIRE)
#define write_fence() __atomic_thread_fence (__ATOMIC_RELEASE)
#endif

/* What a reader needs to find its way, for a capacity of cap entries
 * (a power of two, at least PAGE_ENTRIES).  Its layout is fixed: a new
 * view replaces it when the table outgrows it, and meanwhile only the
 * keys, page pointers and rotations change.
 *
 * The index: level 0 holds the first sector of every block of NODE
 * entries, level l+1 every NODE-th key of level l, up to a top level
 * of one node.  Each level is padded with UINT64_MAX to whole nodes.
 */
struct view {
  struct view *older;           /* the views this one replaced */
  size_t cap;
  size_t bytes;                 /* of this allocation */
  struct remap_entry **pages;   /* cap / PAGE_ENTRIES, NULL if not yet */
  /* Entry i is in slot (i + rot[p]) % PAGE_ENTRIES of page p =
   * i / PAGE_ENTRIES: an insert or remove rotates every page after its
   * own by one slot instead of moving all their entries.
   */
  uint32_t *rot;
  unsigned levels;
  size_t level_off[MAX_LEVELS]; /* of each level in keys */
  /* Level offsets are whole nodes: aligned, a node is two cache lines. */
  uint64_t keys[] __attribute__ ((aligned (CACHE_LINE)));
};

struct remap_table {
  /* Read by every lookup, written only by writers. */
  unsigned long seq;            /* odd while a writer changes the table */
  struct view *view;
  size_t len;
  uint64_t nr_sectors;
  unsigned summary_shift;       /* sectors per bit = 1 << shift */
  uint64_t *summary;
  size_t summary_words;

  /* Writers only, on a cache line of their own. */
  pthread_mutex_t write_lock __attribute__ ((aligned (CACHE_LINE)));
  size_t nr_pages;              /* allocated, from the first */
};

static void *
alloc_lines (size_t bytes)
{
  return aligned_alloc (CACHE_LINE,
                        (bytes + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE);
}

struct remap_table *
remap_table_new (uint64_t nr_sectors)
{
  struct remap_table *t = alloc_lines (sizeof *t);
  uint64_t bits;

  if (t == NULL)
    return NULL;
  memset (t, 0, sizeof *t);
  t->nr_sectors = nr_sectors;
  while (((nr_sectors + (UINT64_C (1) << t->summary_shift) - 1)
          >> t->summary_shift) > SUMMARY_MAX_BITS)
    t->summary_shift++;
  bits = (nr_sectors >> t->summary_shift) + 1;
  t->summary_words = (bits + 63) / 64;
  t->summary = calloc (t->summary_words, sizeof (uint64_t));
  if (t->summary == NULL || pthread_mutex_init (&t->write_lock, NULL) != 0) {
    free (t->summary);
    free (t);
    return NULL;
  }
  return t;
}

void
remap_table_free (struct remap_table *t)
{
  if (t) {
    if (t->view) {
      for (size_t p = 0; p < t->nr_pages; p++)
        free (t->view->pages[p]);
    }
    for (struct view *v = t->view, *older; v; v = older) {
      older = v->older;
      free (v);
    }
    pthread_mutex_destroy (&t->write_lock);
    free (t->summary);
    free (t);
  }
}

bool
remap_table_may_touch (const struct remap_table *t,
                       uint64_t first, uint64_t last)
{
  uint64_t c0, c1;

  if (__atomic_load_n (&t->len, __ATOMIC_ACQUIRE) == 0)
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

/* Entry i, or NULL if its page is not there (only in a view that is
 * inconsistent with the length a reader loaded).  i < v->cap.
 */
static inline struct remap_entry *
entry_at (const struct view *v, size_t i)
{
  struct remap_entry *page =
    __atomic_load_n (&v->pages[i / PAGE_ENTRIES], __ATOMIC_ACQUIRE);
  uint32_t rot = __atomic_load_n (&v->rot[i / PAGE_ENTRIES], __ATOMIC_RELAXED);

  return page ? &page[(i + rot) % PAGE_ENTRIES] : NULL;
}

static inline void
load_entry (const struct remap_entry *p, struct remap_entry *e)
{
  e->sector = __atomic_load_n (&p->sector, __ATOMIC_RELAXED);
  e->spare = __atomic_load_n (&p->spare, __ATOMIC_RELAXED);
  e->state = __atomic_load_n (&p->state, __ATOMIC_RELAXED);
}

static inline void
store_entry (struct remap_entry *p, const struct remap_entry *e)
{
  __atomic_store_n (&p->sector, e->sector, __ATOMIC_RELAXED);
  __atomic_store_n (&p->spare, e->spare, __ATOMIC_RELAXED);
  __atomic_store_n (&p->state, e->state, __ATOMIC_RELAXED);
}

/* Position of the last of the NODE keys at k that is <= s, given that
 * k[0] <= s: a branch-free binary search, far fewer instructions than
 * comparing every key, so that the CPU gets further into the next
 * lookup while this one waits for memory.
 */
static inline unsigned
node_search (const uint64_t *k, uint64_t s)
{
  unsigned p = 0;

  for (unsigned half = NODE / 2; half > 0; half /= 2)
    if (__atomic_load_n (&k[p + half], __ATOMIC_RELAXED) <= s)
      p += half;
  return p;
}

/* Index of the first of the n entries with sector >= s, through view
 * v (n <= v->cap, s < UINT64_MAX so that no padding matches).  Under a
 * concurrent writer the answer may be wrong, for the caller's check of
 * the sequence counter to catch, but it stays within the arrays: keys
 * past the last ever used are padding forever.
 */
static size_t
lower_bound (const struct view *v, size_t n, uint64_t s)
{
  const struct remap_entry *page;
  size_t j = 0, b, end, first, wrap;
  unsigned c = 0;

  if (n == 0)
    return 0;
  /* Down the levels: j becomes the last key <= s of each level. */
  for (unsigned l = v->levels; l-- > 0; ) {
    const uint64_t *k = &v->keys[v->level_off[l] + j * NODE];
    if (__atomic_load_n (&k[0], __ATOMIC_RELAXED) > s)
      return 0;                 /* s is below every key */
    j = j * NODE + node_search (k, s);
  }
  /* Block j's first sector is <= s, the next block's is > s.  Count
   * the entries below s rather than search: the block's cache lines,
   * likely not cached, then load in parallel.
   */
  b = j * NODE;
  if (b >= n)
    return n;
  page = __atomic_load_n (&v->pages[b / PAGE_ENTRIES], __ATOMIC_ACQUIRE);
  if (page == NULL)
    return n;
  first = (b + __atomic_load_n (&v->rot[b / PAGE_ENTRIES], __ATOMIC_RELAXED))
    % PAGE_ENTRIES;
  end = n - b < NODE ? n - b : NODE;
  /* The block may wrap around the end of its page. */
  wrap = end > PAGE_ENTRIES - first ? end - (PAGE_ENTRIES - first) : 0;
  for (size_t i = first; i < first + end - wrap; i++)
    c += __atomic_load_n (&page[i].sector, __ATOMIC_RELAXED) < s;
  for (size_t i = 0; i < wrap; i++)
    c += __atomic_load_n (&page[i].sector, __ATOMIC_RELAXED) < s;
  return b + c;
}

/* A writer holds the lock for as long as the counter is odd: wait on
 * it rather than spin.
 */
static void
wait_for_writer (struct remap_table *t)
{
  pthread_mutex_lock (&t->write_lock);
  pthread_mutex_unlock (&t->write_lock);
}

bool
remap_table_next (struct remap_table *t, uint64_t first, uint64_t last,
                  struct remap_entry *entry)
{
  if (first >= t->nr_sectors)   /* also keeps first below the padding */
    return false;
  for (;;) {
    unsigned long seq = __atomic_load_n (&t->seq, __ATOMIC_ACQUIRE);
    const struct view *v;
    const struct remap_entry *p = NULL;
    struct remap_entry e;
    size_t n, i;
    bool found = false;

    if (seq & 1) {
      wait_for_writer (t);
      continue;
    }
    v = __atomic_load_n (&t->view, __ATOMIC_ACQUIRE);
    n = __atomic_load_n (&t->len, __ATOMIC_RELAXED);
    if (v != NULL) {
      if (n > v->cap)
        n = v->cap;
      i = lower_bound (v, n, first);
      if (i < n)
        p = entry_at (v, i);
      if (p) {
        load_entry (p, &e);
        found = e.sector <= last;
      }
    }
    read_fence ();
    if (__atomic_load_n (&t->seq, __ATOMIC_RELAXED) == seq) {
      if (found)
        *entry = e;
      return found;
    }
  }
}

bool
remap_table_lookup (struct remap_table *t, uint64_t sector,
                    struct remap_entry *entry)
{
  return remap_table_next (t, sector, sector, entry);
}

/* ---- Writers: all below run under write_lock. ---- */

static void
write_begin (struct remap_table *t)
{
  __atomic_store_n (&t->seq, t->seq + 1, __ATOMIC_RELAXED);
  write_fence ();
}

static void
write_end (struct remap_table *t)
{
  __atomic_store_n (&t->seq, t->seq + 1, __ATOMIC_RELEASE);
}

static void
summary_set (struct remap_table *t, uint64_t sector)
{
  uint64_t c = sector >> t->summary_shift;
  __atomic_fetch_or (&t->summary[c / 64], UINT64_C (1) << (c % 64),
                     __ATOMIC_RELEASE);
}

/* Clears the summary bit of a chunk that no longer holds an entry. */
static void
summary_clear_if_empty (struct remap_table *t, uint64_t sector)
{
  uint64_t c = sector >> t->summary_shift;
  uint64_t chunk_first = c << t->summary_shift;
  size_t i = lower_bound (t->view, t->len, chunk_first);

  if (i < t->len &&
      (entry_at (t->view, i)->sector >> t->summary_shift) == c)
    return;
  __atomic_fetch_and (&t->summary[c / 64], ~(UINT64_C (1) << (c % 64)),
                      __ATOMIC_RELEASE);
}

/* Entries from index i on moved, and the table held old_len entries
 * before: refresh the keys that cover them, on every level of v.
 */
static void
refresh_index (struct remap_table *t, struct view *v, size_t i,
               size_t old_len)
{
  size_t n = t->len > old_len ? t->len : old_len;
  size_t lo = i / NODE, hi = (n + NODE - 1) / NODE;

  for (size_t b = lo; b < hi; b++)
    __atomic_store_n (&v->keys[b],
                      b * NODE < t->len ? entry_at (v, b * NODE)->sector
                                        : UINT64_MAX,
                      __ATOMIC_RELAXED);
  for (unsigned l = 1; l < v->levels; l++) {
    lo /= NODE;
    hi = (hi + NODE - 1) / NODE;
    for (size_t j = lo; j < hi; j++)
      __atomic_store_n (&v->keys[v->level_off[l] + j],
                        v->keys[v->level_off[l - 1] + j * NODE],
                        __ATOMIC_RELAXED);
  }
}

/* Replaces the view with one for cap entries, with the same pages. */
static int
grow_view (struct remap_table *t, size_t cap)
{
  size_t keys = (cap + NODE - 1) / NODE, total = 0, key_bytes, bytes;
  size_t level_off[MAX_LEVELS];
  unsigned levels = 0;
  struct view *v;

  /* Lay the levels out... */
  for (;;) {
    keys = (keys + NODE - 1) / NODE * NODE;
    level_off[levels++] = total;
    total += keys;
    if (keys == NODE)
      break;
    keys /= NODE;
  }
  /* ... then the pages and their rotations, in one allocation. */
  key_bytes = offsetof (struct view, keys) + total * sizeof v->keys[0];
  key_bytes = (key_bytes + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
  bytes = key_bytes + cap / PAGE_ENTRIES * (sizeof v->pages[0] +
                                            sizeof v->rot[0]);
  v = alloc_lines (bytes);
  if (v == NULL)
    return -1;
  v->older = t->view;
  v->cap = cap;
  v->bytes = bytes;
  v->pages = (struct remap_entry **) ((char *) v + key_bytes);
  v->rot = (uint32_t *) &v->pages[cap / PAGE_ENTRIES];
  for (size_t p = 0; p < cap / PAGE_ENTRIES; p++) {
    v->pages[p] = p < t->nr_pages ? t->view->pages[p] : NULL;
    v->rot[p] = p < t->nr_pages ? t->view->rot[p] : 0;
  }
  v->levels = levels;
  memcpy (v->level_off, level_off, sizeof level_off);
  for (size_t k = 0; k < total; k++)
    v->keys[k] = UINT64_MAX;
  refresh_index (t, v, 0, t->len);
  /* Readers may still be in the old view: it stays until free. */
  __atomic_store_n (&t->view, v, __ATOMIC_RELEASE);
  return 0;
}

/* Room for want entries: a view for as many and their pages. */
static int
reserve (struct remap_table *t, size_t want)
{
  size_t cap = t->view ? t->view->cap : PAGE_ENTRIES;

  while (cap < want)
    cap *= 2;
  if ((t->view == NULL || cap > t->view->cap) && grow_view (t, cap) == -1)
    return -1;
  while (t->nr_pages * PAGE_ENTRIES < want) {
    struct remap_entry *page = alloc_lines (PAGE_ENTRIES * sizeof *page);
    if (page == NULL)
      return -1;
    __atomic_store_n (&t->view->pages[t->nr_pages], page, __ATOMIC_RELEASE);
    t->nr_pages++;
  }
  return 0;
}

/* Puts entry at index i, moving the entries from i on up by one.  The
 * caller made room for one more.
 */
static void
insert_at (struct remap_table *t, size_t i, const struct remap_entry *entry)
{
  struct view *v = t->view;
  size_t pi = i / PAGE_ENTRIES, last = t->len / PAGE_ENTRIES, end;

  /* Each later page takes the last entry of the page before into a
   * rotated-in first slot...
   */
  for (size_t p = last; p > pi; p--) {
    struct remap_entry carry = *entry_at (v, p * PAGE_ENTRIES - 1);
    __atomic_store_n (&v->rot[p], (v->rot[p] + PAGE_ENTRIES - 1) %
                      PAGE_ENTRIES, __ATOMIC_RELAXED);
    store_entry (entry_at (v, p * PAGE_ENTRIES), &carry);
  }
  /* ... and only page pi moves entries. */
  end = last > pi ? (pi + 1) * PAGE_ENTRIES - 1 : t->len;
  for (size_t k = end; k > i; k--)
    store_entry (entry_at (v, k), entry_at (v, k - 1));
  store_entry (entry_at (v, i), entry);
  __atomic_store_n (&t->len, t->len + 1, __ATOMIC_RELEASE);
}

/* The reverse of insert_at. */
static void
remove_at (struct remap_table *t, size_t i)
{
  struct view *v = t->view;
  size_t pi = i / PAGE_ENTRIES, last = (t->len - 1) / PAGE_ENTRIES, end;

  end = last > pi ? (pi + 1) * PAGE_ENTRIES - 1 : t->len - 1;
  for (size_t k = i; k < end; k++)
    store_entry (entry_at (v, k), entry_at (v, k + 1));
  for (size_t p = pi + 1; p <= last; p++) {
    store_entry (entry_at (v, p * PAGE_ENTRIES - 1),
                 entry_at (v, p * PAGE_ENTRIES));
    __atomic_store_n (&v->rot[p], (v->rot[p] + 1) % PAGE_ENTRIES,
                      __ATOMIC_RELAXED);
  }
  __atomic_store_n (&t->len, t->len - 1, __ATOMIC_RELEASE);
}

int
remap_table_insert (struct remap_table *t, const struct remap_entry *entry)
{
  size_t i = 0;
  int r = 0;

  if (entry->sector >= t->nr_sectors) {
    errno = ERANGE;
    return -1;
  }
  pthread_mutex_lock (&t->write_lock);
  if (t->view)
    i = lower_bound (t->view, t->len, entry->sector);
  if (i < t->len && entry_at (t->view, i)->sector == entry->sector) {
    write_begin (t);
    store_entry (entry_at (t->view, i), entry);
    write_end (t);
  }
  else if (reserve (t, t->len + 1) == -1) {
    errno = ENOMEM;
    r = -1;
  }
  else {
    summary_set (t, entry->sector);
    write_begin (t);
    insert_at (t, i, entry);
    refresh_index (t, t->view, i, t->len - 1);
    write_end (t);
  }
  pthread_mutex_unlock (&t->write_lock);
  return r;
}

int
remap_table_load (struct remap_table *t,
                  const struct remap_entry *entries, size_t n)
{
  size_t old_len;
  int r = 0;

  for (size_t i = 0; i < n; i++) {
    if (entries[i].sector >= t->nr_sectors ||
        (i > 0 && entries[i].sector <= entries[i-1].sector)) {
      errno = ERANGE;
      return -1;
    }
  }
  pthread_mutex_lock (&t->write_lock);
  if (reserve (t, n) == -1) {
    errno = ENOMEM;
    r = -1;
  }
  else {
    memset (t->summary, 0, t->summary_words * sizeof (uint64_t));
    for (size_t i = 0; i < n; i++)
      summary_set (t, entries[i].sector);
    write_begin (t);
    for (size_t p = 0; p < t->nr_pages; p++)
      __atomic_store_n (&t->view->rot[p], 0, __ATOMIC_RELAXED);
    for (size_t i = 0; i < n; i++)
      store_entry (entry_at (t->view, i), &entries[i]);
    old_len = t->len;
    __atomic_store_n (&t->len, n, __ATOMIC_RELEASE);
    refresh_index (t, t->view, 0, old_len);
    write_end (t);
  }
  pthread_mutex_unlock (&t->write_lock);
  return r;
}

bool
remap_table_remove (struct remap_table *t, uint64_t sector)
{
  bool found = false;
  size_t i;

  if (sector >= t->nr_sectors)
    return false;
  pthread_mutex_lock (&t->write_lock);
  if (t->len > 0) {
    i = lower_bound (t->view, t->len, sector);
    if (i < t->len && entry_at (t->view, i)->sector == sector) {
      write_begin (t);
      remove_at (t, i);
      refresh_index (t, t->view, i, t->len + 1);
      write_end (t);
      summary_clear_if_empty (t, sector);
      found = true;
    }
  }
  pthread_mutex_unlock (&t->write_lock);
  return found;
}

size_t
remap_table_count (struct remap_table *t)
{
  return __atomic_load_n (&t->len, __ATOMIC_ACQUIRE);
}

ssize_t
remap_table_snapshot (struct remap_table *t, uint32_t state_mask,
                      struct remap_entry **entries)
{
  size_t n = 0;
  struct remap_entry *out;

  pthread_mutex_lock (&t->write_lock);
  out = malloc ((t->len ? t->len : 1) * sizeof *out);
  if (out == NULL) {
    pthread_mutex_unlock (&t->write_lock);
    errno = ENOMEM;
    return -1;
  }
  for (size_t p = 0; p * PAGE_ENTRIES < t->len; p++) {
    const struct remap_entry *page = t->view->pages[p];
    size_t rot = t->view->rot[p], end = t->len - p * PAGE_ENTRIES;

    if (end > PAGE_ENTRIES)
      end = PAGE_ENTRIES;
    for (size_t q = 0; q < end; q++) {
      const struct remap_entry *e = &page[(q + rot) % PAGE_ENTRIES];
      if (e->state & state_mask)
        out[n++] = *e;
    }
  }
  pthread_mutex_unlock (&t->write_lock);
  *entries = out;
  return n;
}

size_t
remap_table_memory (struct remap_table *t)
{
  size_t bytes;

  pthread_mutex_lock (&t->write_lock);
  bytes = sizeof *t + t->nr_pages * PAGE_ENTRIES * sizeof (struct remap_entry)
    + t->summary_words * sizeof (uint64_t);
  for (const struct view *v = t->view; v; v = v->older)
    bytes += v->bytes;
  pthread_mutex_unlock (&t->write_lock);
  return bytes;
}
