/* nbdkit-remap: sector range lists and their parsers (see ranges.h).
 *
 * Every parser is strict: a line it does not understand is an error
 * naming the line, never skipped, because a typo in a list of bad
 * sectors would otherwise leave a bad sector unhandled.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "ranges.h"

void
remap_ranges_free (struct remap_ranges *r)
{
  free (r->v);
  r->v = NULL;
  r->len = r->cap = 0;
}

int
remap_ranges_append (struct remap_ranges *r, uint64_t first, uint64_t last)
{
  if (r->len == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    struct remap_range *v = realloc (r->v, cap * sizeof *v);
    if (v == NULL)
      return -1;
    r->v = v;
    r->cap = cap;
  }
  r->v[r->len++] = (struct remap_range) { first, last };
  return 0;
}

/* Parses an unsigned number: decimal, or hex with 0x.  Advances *p. */
static bool
parse_u64 (const char **p, uint64_t *out)
{
  const char *s = *p;
  int base = 10;
  uint64_t v = 0;
  bool any = false;

  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s += 2;
  }
  for (;; s++) {
    int d;
    if (*s >= '0' && *s <= '9')
      d = *s - '0';
    else if (base == 16 && isxdigit ((unsigned char) *s))
      d = tolower ((unsigned char) *s) - 'a' + 10;
    else
      break;
    if (v > (UINT64_MAX - d) / base)
      return false;
    v = v * base + d;
    any = true;
  }
  *p = s;
  *out = v;
  return any;
}

static void
skip_blanks (const char **p)
{
  while (**p == ' ' || **p == '\t')
    (*p)++;
}

/* One "N" or "N-M" item at *p. */
static int
parse_item (const char **p, struct remap_ranges *r, char *why,
            size_t why_len)
{
  uint64_t first, last;

  skip_blanks (p);
  if (!parse_u64 (p, &first)) {
    snprintf (why, why_len, "expected a sector number at \"%.20s\"", *p);
    return -1;
  }
  last = first;
  skip_blanks (p);
  if (**p == '-') {
    (*p)++;
    skip_blanks (p);
    if (!parse_u64 (p, &last) || last < first) {
      snprintf (why, why_len, "bad range ending at \"%.20s\"", *p);
      return -1;
    }
    skip_blanks (p);
  }
  if (remap_ranges_append (r, first, last) == -1) {
    snprintf (why, why_len, "out of memory");
    return -1;
  }
  return 0;
}

int
remap_ranges_parse_list (const char *s, struct remap_ranges *r,
                         char *why, size_t why_len)
{
  for (;;) {
    if (parse_item (&s, r, why, why_len) == -1)
      return -1;
    if (*s == '\0')
      return 0;
    if (*s != ',') {
      snprintf (why, why_len, "unexpected \"%.20s\"", s);
      return -1;
    }
    s++;
  }
}

/* Reads lines, calling fn on each with comments and the newline cut. */
static int
each_line (FILE *fp, int (*fn) (void *, const char *, char *, size_t),
           void *opaque, char *why, size_t why_len)
{
  CLEANUP_FREE char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  unsigned lineno = 0;

  while ((n = getline (&line, &cap, fp)) != -1) {
    const char *p = line;
    char sub[256];

    lineno++;
    if (memchr (line, '\0', n) != NULL) {
      snprintf (why, why_len, "line %u: not text (NUL byte)", lineno);
      return -1;
    }
    line[strcspn (line, "#\r\n")] = '\0';
    skip_blanks (&p);
    if (*p == '\0')
      continue;
    if (fn (opaque, p, sub, sizeof sub) == -1) {
      snprintf (why, why_len, "line %u: %s", lineno, sub);
      return -1;
    }
  }
  if (ferror (fp)) {
    snprintf (why, why_len, "read error: %s", strerror (errno));
    return -1;
  }
  return 0;
}

static int
list_line (void *opaque, const char *p, char *why, size_t why_len)
{
  struct remap_ranges *r = opaque;

  if (parse_item (&p, r, why, why_len) == -1)
    return -1;
  if (*p != '\0') {
    snprintf (why, why_len, "unexpected \"%.20s\"", p);
    return -1;
  }
  return 0;
}

int
remap_ranges_parse_file (FILE *fp, struct remap_ranges *r, char *why,
                         size_t why_len)
{
  return each_line (fp, list_line, r, why, why_len);
}

struct ddrescue_state {
  struct remap_ranges *r;
  uint32_t sector_size;
  bool seen_status;
  uint64_t next;                /* end of the previous area */
};

static int
ddrescue_line (void *opaque, const char *p, char *why, size_t why_len)
{
  struct ddrescue_state *st = opaque;
  uint64_t pos, size;
  char status;

  /* The first line is the status line: "pos status [pass]". */
  if (!st->seen_status) {
    if (!parse_u64 (&p, &pos) || (skip_blanks (&p), *p == '\0') ||
        !strchr ("?*/-FGR+", *p)) {
      snprintf (why, why_len, "bad status line");
      return -1;
    }
    st->seen_status = true;
    return 0;
  }
  if (!parse_u64 (&p, &pos)) {
    snprintf (why, why_len, "expected a position");
    return -1;
  }
  skip_blanks (&p);
  if (!parse_u64 (&p, &size) || size == 0 || pos + size < pos) {
    snprintf (why, why_len, "expected a non-zero size");
    return -1;
  }
  skip_blanks (&p);
  /* strchr finds the terminating NUL too: test it first, and never
   * step past the end of the line.
   */
  status = *p;
  if (status == '\0' || !strchr ("?*/-+", status)) {
    snprintf (why, why_len, "expected a status of ?, *, /, - or +");
    return -1;
  }
  p++;
  skip_blanks (&p);
  if (*p != '\0') {
    snprintf (why, why_len, "unexpected \"%.20s\" after the status", p);
    return -1;
  }
  if (pos < st->next) {
    snprintf (why, why_len, "areas overlap or are out of order");
    return -1;
  }
  st->next = pos + size;
  if (status != '-')
    return 0;
  if (remap_ranges_append (st->r, pos / st->sector_size,
                           (pos + size - 1) / st->sector_size) == -1) {
    snprintf (why, why_len, "out of memory");
    return -1;
  }
  return 0;
}

int
remap_ddrescue_parse (FILE *fp, uint32_t sector_size,
                      struct remap_ranges *r, char *why, size_t why_len)
{
  struct ddrescue_state st = { .r = r, .sector_size = sector_size };

  if (each_line (fp, ddrescue_line, &st, why, why_len) == -1)
    return -1;
  if (!st.seen_status) {
    snprintf (why, why_len, "no status line: not a ddrescue mapfile");
    return -1;
  }
  return 0;
}
