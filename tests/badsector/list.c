/* nbdkit-badsector-filter: the list file (see badsector.c for its
 * format): parsing it, re-reading it when it changes, and asking it
 * which sectors misbehave how.
 */

#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "list.h"

/* A list file larger than this is surely a mistake. */
#define MAX_LIST_FILE_SIZE (1024 * 1024)

/* File timestamps come from a coarse clock, so the file can be
 * rewritten without changing mtime or size.  While the file's mtime
 * is this close to the moment we read it, compare contents too (the
 * same trick as git's "racily clean" index entries).
 */
#define RACY_WINDOW_NS INT64_C(1000000000)



static const char *const kind_names[] = {
  [KIND_READ] = "read",
  [KIND_WRITE] = "write",
  [KIND_READ_ONCE] = "read-once",
  [KIND_WRITE_ONCE] = "write-once",
  [KIND_DROP] = "drop",
  [KIND_WRITEBACK] = "writeback",
};



/* What identifies a version of the list file. */
struct stamp {
  bool exists;
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
};

static char *filename;

/* Everything below is protected by list_lock. */
pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
struct list list;               /* the list in force */
static bool have_stamp;         /* false until the file is first seen */
static struct stamp stamp;      /* the file version last looked at */
static char *content;           /* ... its bytes (NULL if missing) */
static size_t content_len;
static struct timespec read_time; /* when content was read */

static void
list_free (struct list *l)
{
  free (l->ranges);
  l->ranges = NULL;
  l->len = 0;
  l->delay_read_ms = l->delay_write_ms = l->delay_writeback_ms = 0;
}

static int
compare_ranges (const void *av, const void *bv)
{
  const struct range *a = av, *b = bv;

  if (a->first != b->first)
    return a->first < b->first ? -1 : 1;
  if (a->last != b->last)
    return a->last < b->last ? -1 : 1;
  return (int) a->kind - (int) b->kind;
}

static int
list_append (struct list *l, size_t *cap, uint64_t first, uint64_t last,
             enum kind kind)
{
  if (l->len == *cap) {
    size_t ncap = *cap ? *cap * 2 : 16;
    struct range *p = realloc (l->ranges, ncap * sizeof *p);

    if (p == NULL) {
      nbdkit_error ("badsector: realloc: %m");
      return -1;
    }
    l->ranges = p;
    *cap = ncap;
  }
  l->ranges[l->len++] = (struct range) {
    .first = first, .last = last, .kind = kind
  };
  return 0;
}

/* Parse an unsigned decimal number.  strtoull alone would accept
 * leading whitespace, a sign and an empty string.
 */
static int
parse_u64 (const char *s, uint64_t *r)
{
  char *end;
  unsigned long long v;

  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno != 0 || *end != '\0')
    return -1;
  *r = v;
  return 0;
}

/* Parse FIRST or FIRST-LAST.  s is modified only while parsing, so
 * that the caller can still quote it in an error message.
 */
static int
parse_range (char *s, uint64_t *first, uint64_t *last)
{
  char *dash = strchr (s, '-');
  int r;

  if (dash == NULL) {
    if (parse_u64 (s, first) == -1)
      return -1;
    *last = *first;
    return 0;
  }
  *dash = '\0';
  r = parse_u64 (s, first) == -1 || parse_u64 (dash + 1, last) == -1 ||
    *first > *last ? -1 : 0;
  *dash = '-';
  return r;
}

/* Parse the list file.  buf must be NUL-terminated at buf[len] and is
 * modified.  On error, reports it and leaves *out unchanged.
 */
static int
parse_list (char *buf, size_t len, struct list *out)
{
  struct list l = { 0 };
  size_t cap = 0;
  size_t lineno = 0;
  char *line, *next_line;

  if (memchr (buf, '\0', len) != NULL) {
    nbdkit_error ("badsector: %s: file contains a NUL byte", filename);
    return -1;
  }

  for (line = buf; line != NULL; line = next_line) {
    char *tok[3], *saveptr, *p;
    size_t ntok = 0;
    uint64_t first, last;

    lineno++;
    next_line = strchr (line, '\n');
    if (next_line)
      *next_line++ = '\0';
    p = strchr (line, '#');
    if (p)
      *p = '\0';

    for (p = strtok_r (line, " \t\r\v\f", &saveptr);
         p != NULL && ntok < 3;
         p = strtok_r (NULL, " \t\r\v\f", &saveptr))
      tok[ntok++] = p;
    if (ntok == 0)
      continue;
    if (ntok != 2) {
      nbdkit_error ("badsector: %s: line %zu: expected two fields: "
                    "KIND FIRST[-LAST] or delay-read|delay-write|delay-writeback MS",
                    filename, lineno);
      goto err;
    }

    if (strcmp (tok[0], "delay-read") == 0 ||
        strcmp (tok[0], "delay-write") == 0 ||
        strcmp (tok[0], "delay-writeback") == 0) {
      uint64_t ms;

      if (parse_u64 (tok[1], &ms) == -1 || ms > UINT32_MAX) {
        nbdkit_error ("badsector: %s: line %zu: cannot parse "
                      "milliseconds: %s", filename, lineno, tok[1]);
        goto err;
      }
      if (strcmp (tok[0], "delay-read") == 0)
        l.delay_read_ms = ms;
      else if (strcmp (tok[0], "delay-write") == 0)
        l.delay_write_ms = ms;
      else
        l.delay_writeback_ms = ms;
      continue;
    }

    if (parse_range (tok[1], &first, &last) == -1) {
      nbdkit_error ("badsector: %s: line %zu: cannot parse sector range "
                    "(expected FIRST or FIRST-LAST with FIRST <= LAST): %s",
                    filename, lineno, tok[1]);
      goto err;
    }
    if (strcmp (tok[0], "rw") == 0) {
      if (list_append (&l, &cap, first, last, KIND_READ) == -1 ||
          list_append (&l, &cap, first, last, KIND_WRITE) == -1)
        goto err;
    }
    else {
      size_t k;

      for (k = 0; k < sizeof kind_names / sizeof kind_names[0]; ++k)
        if (strcmp (tok[0], kind_names[k]) == 0)
          break;
      if (k == sizeof kind_names / sizeof kind_names[0]) {
        nbdkit_error ("badsector: %s: line %zu: unknown keyword: %s",
                      filename, lineno, tok[0]);
        goto err;
      }
      if (list_append (&l, &cap, first, last, (enum kind) k) == -1)
        goto err;
    }
  }

  if (l.len > 0)
    qsort (l.ranges, l.len, sizeof l.ranges[0], compare_ranges);
  *out = l;
  return 0;

 err:
  list_free (&l);
  return -1;
}

static void
stamp_from_stat (struct stamp *s, const struct stat *st)
{
  s->exists = true;
  s->dev = st->st_dev;
  s->ino = st->st_ino;
  s->size = st->st_size;
  s->mtime = st->st_mtim;
}

static bool
stamp_equal (const struct stamp *a, const struct stamp *b)
{
  if (a->exists != b->exists)
    return false;
  if (!a->exists)
    return true;
  return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
    a->mtime.tv_sec == b->mtime.tv_sec &&
    a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Could the file have been rewritten since we read it without its
 * stamp changing?  See RACY_WINDOW_NS.
 */
static bool
stamp_is_racy (const struct stamp *s)
{
  int64_t ns;

  ns = ((int64_t) read_time.tv_sec - (int64_t) s->mtime.tv_sec) * 1000000000
    + ((int64_t) read_time.tv_nsec - (int64_t) s->mtime.tv_nsec);
  return ns < RACY_WINDOW_NS;
}

/* Read the whole list file.  Returns 0 with *buf NUL-terminated, or
 * 1 if the file has vanished, or -1 on error (reported).
 */
static int
read_list_file (char **buf, size_t *len, struct stat *st)
{
  int fd;
  char *b = NULL;
  size_t n = 0;

  fd = open (filename, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    if (errno == ENOENT)
      return 1;
    nbdkit_error ("badsector: open: %s: %m", filename);
    return -1;
  }
  /* fstat the descriptor, not the name, so the stamp describes the
   * bytes we are about to read.
   */
  if (fstat (fd, st) == -1) {
    nbdkit_error ("badsector: fstat: %s: %m", filename);
    goto err;
  }
  b = malloc (MAX_LIST_FILE_SIZE + 1);
  if (b == NULL) {
    nbdkit_error ("badsector: malloc: %m");
    goto err;
  }
  for (;;) {
    ssize_t r = read (fd, b + n, MAX_LIST_FILE_SIZE + 1 - n);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      nbdkit_error ("badsector: read: %s: %m", filename);
      goto err;
    }
    if (r == 0)
      break;
    n += r;
    if (n > MAX_LIST_FILE_SIZE) {
      nbdkit_error ("badsector: %s: file is larger than %d bytes",
                    filename, MAX_LIST_FILE_SIZE);
      goto err;
    }
  }
  close (fd);
  b[n] = '\0';
  *buf = b;
  *len = n;
  return 0;

 err:
  free (b);
  close (fd);
  return -1;
}

/* Replace the list in force.  Any once-only state goes with it. */
static void
install_list (struct list *l)
{
  list_free (&list);
  list = *l;
  nbdkit_debug ("badsector: loaded %zu range(s) from %s "
                "(delay-read %" PRIu32 " ms, delay-write %" PRIu32 " ms)",
                list.len, filename, list.delay_read_ms, list.delay_write_ms);
}

/* Bring the list up to date with the file.  Called with list_lock held at
 * the start of every data request.  Errors are reported and the
 * previous list stays in force.
 */
void
refresh_list_locked (void)
{
  struct stat st;
  struct stamp now = { .exists = false };
  bool changed;
  char *buf, *copy;
  size_t len;
  struct list l;
  int r;

  if (stat (filename, &st) == 0)
    stamp_from_stat (&now, &st);
  else if (errno != ENOENT) {
    nbdkit_error ("badsector: stat: %s: %m", filename);
    return;
  }

  changed = !have_stamp || !stamp_equal (&now, &stamp);
  if (!changed && (!now.exists || !stamp_is_racy (&now)))
    return;

  r = now.exists ? read_list_file (&buf, &len, &st) : 1;
  if (r == -1)
    return;
  if (r == 1) {
    /* A missing file is an empty list. */
    struct list empty = { 0 };

    if (have_stamp && !stamp.exists)
      return;
    install_list (&empty);
    free (content);
    content = NULL;
    content_len = 0;
    stamp = (struct stamp) { .exists = false };
    have_stamp = true;
    return;
  }

  stamp_from_stat (&now, &st);
  changed = !have_stamp || !stamp_equal (&now, &stamp);
  clock_gettime (CLOCK_REALTIME, &read_time);

  /* Same stamp and same bytes: nothing happened, and the once-only
   * state must survive.
   */
  if (!changed && content && content_len == len &&
      memcmp (content, buf, len) == 0) {
    free (buf);
    return;
  }

  /* Parsing cuts the buffer up, and we keep the original bytes for
   * the comparison above.
   */
  copy = malloc (len + 1);
  if (copy == NULL) {
    nbdkit_error ("badsector: malloc: %m");
    free (buf);
    return;
  }
  memcpy (copy, buf, len + 1);
  if (parse_list (copy, len, &l) == 0)
    install_list (&l);
  else
    nbdkit_error ("badsector: %s: keeping the previous list", filename);
  free (copy);

  /* Remember this version even if it did not parse, so that a bad
   * file is reported once rather than on every request.
   */
  free (content);
  content = buf;
  content_len = len;
  stamp = now;
  have_stamp = true;
}

/* Find the lowest sector in [s0, s1] covered by a range of kind.
 * Called with list_lock held.
 */
static bool
find_kind (enum kind kind, uint64_t s0, uint64_t s1, uint64_t *sector)
{
  size_t i;

  /* Ranges are sorted by first, so the first match is the lowest. */
  for (i = 0; i < list.len && list.ranges[i].first <= s1; ++i) {
    const struct range *r = &list.ranges[i];

    if (r->kind == kind && r->last >= s0) {
      *sector = r->first > s0 ? r->first : s0;
      return true;
    }
  }
  return false;
}

/* Remove [s0, s1] from every range of the given once-only kind: those
 * sectors have now had their one failure.  Called with list_lock held.
 */
static void
consume_once (enum kind kind, uint64_t s0, uint64_t s1)
{
  struct range *nr;
  size_t i, n = 0;

  /* Each range loses its middle and so becomes at most two. */
  nr = malloc (2 * list.len * sizeof *nr);
  if (nr == NULL) {
    nbdkit_error ("badsector: malloc: %m");
    return;
  }
  for (i = 0; i < list.len; ++i) {
    const struct range *r = &list.ranges[i];

    if (r->kind != kind || r->last < s0 || r->first > s1) {
      nr[n++] = *r;
      continue;
    }
    if (r->first < s0)
      nr[n++] = (struct range) { r->first, s0 - 1, kind };
    if (r->last > s1)
      nr[n++] = (struct range) { s1 + 1, r->last, kind };
  }
  if (n > 0)
    qsort (nr, n, sizeof nr[0], compare_ranges);
  free (list.ranges);
  list.ranges = nr;
  list.len = n;
}

/* Should a request touching sectors [s0, s1] fail?  If so, returns
 * true with the lowest offending sector in *sector and uses up any
 * once-only sectors the request touched: the request touching them
 * has failed, which was their one failure.  Called with list_lock held.
 */
bool
injected_error_locked (bool is_write, uint64_t s0, uint64_t s1,
                       uint64_t *sector)
{
  enum kind always = is_write ? KIND_WRITE : KIND_READ;
  enum kind once = is_write ? KIND_WRITE_ONCE : KIND_READ_ONCE;
  uint64_t sa = 0, so = 0;
  bool a, o;

  a = find_kind (always, s0, s1, &sa);
  o = find_kind (once, s0, s1, &so);
  if (!a && !o)
    return false;
  if (o)
    consume_once (once, s0, s1);
  if (a && o)
    *sector = sa < so ? sa : so;
  else
    *sector = a ? sa : so;
  return true;
}



/* Collect the sectors within [s0, s1] covered by ranges of the given
 * kinds (a mask of 1 << KIND_*), clipped and merged, in ascending
 * order.  Returns -1 on allocation failure.  Called with list_lock
 * held.
 */
int
spans_locked (unsigned kinds, uint64_t s0, uint64_t s1,
              struct span **spans, size_t *nspans)
{
  struct span *sp = NULL;
  size_t i, n = 0;

  *spans = NULL;
  *nspans = 0;
  for (i = 0; i < list.len && list.ranges[i].first <= s1; ++i) {
    const struct range *r = &list.ranges[i];
    uint64_t first, last;

    if (!(kinds & (1u << r->kind)) || r->last < s0)
      continue;
    first = r->first > s0 ? r->first : s0;
    last = r->last < s1 ? r->last : s1;
    if (n > 0 && first <= sp[n-1].last + 1) {
      /* Overlaps or abuts the previous span (sorted by first). */
      if (last > sp[n-1].last)
        sp[n-1].last = last;
      continue;
    }
    if (sp == NULL) {
      /* No more spans than ranges. */
      sp = malloc (list.len * sizeof *sp);
      if (sp == NULL) {
        nbdkit_error ("badsector: malloc: %m");
        return -1;
      }
    }
    sp[n++] = (struct span) { first, last };
  }
  *spans = sp;
  *nspans = n;
  return 0;
}

int
list_set_file (const char *value)
{
  free (filename);
  /* nbdkit changes directory to / before serving. */
  filename = nbdkit_absolute_path (value);
  return filename ? 0 : -1;
}

bool
list_has_file (void)
{
  return filename != NULL;
}

void
list_unload (void)
{
  free (filename);
  list_free (&list);
  free (content);
}
