/* nbdkit-remap fuzzers: helpers shared by the harnesses. */
#include <config.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz-common.h"

void
fuzz_fail (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fputs ("FUZZ FAILURE: ", stderr);
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
  abort ();
}

/* A small recursive-descent JSON checker (RFC 8259 grammar). */
struct json {
  const char *p, *end;
  int depth;
};

static bool value (struct json *j);

static void
ws (struct json *j)
{
  while (j->p < j->end &&
         (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
}

static bool
peek (struct json *j, char c)
{
  return j->p < j->end && *j->p == c;
}

static bool
lit (struct json *j, const char *w)
{
  for (; *w; w++, j->p++)
    if (!peek (j, *w))
      return false;
  return true;
}

static bool
is_hex (char c)
{
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
    (c >= 'A' && c <= 'F');
}

static bool
is_digit (struct json *j)
{
  return j->p < j->end && *j->p >= '0' && *j->p <= '9';
}

static bool
string (struct json *j)
{
  if (!peek (j, '"'))
    return false;
  j->p++;
  while (j->p < j->end) {
    unsigned char c = *j->p++;
    if (c == '"')
      return true;
    if (c < 0x20)
      return false;
    if (c != '\\')
      continue;
    if (j->p >= j->end)
      return false;
    c = *j->p++;
    switch (c) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r':
    case 't':
      break;
    case 'u':
      for (int i = 0; i < 4; i++)
        if (j->p >= j->end || !is_hex (*j->p++))
          return false;
      break;
    default:
      return false;
    }
  }
  return false;
}

static bool
number (struct json *j)
{
  if (peek (j, '-'))
    j->p++;
  if (peek (j, '0'))
    j->p++;
  else if (is_digit (j))
    while (is_digit (j))
      j->p++;
  else
    return false;
  if (peek (j, '.')) {
    j->p++;
    if (!is_digit (j))
      return false;
    while (is_digit (j))
      j->p++;
  }
  if (peek (j, 'e') || peek (j, 'E')) {
    j->p++;
    if (peek (j, '+') || peek (j, '-'))
      j->p++;
    if (!is_digit (j))
      return false;
    while (is_digit (j))
      j->p++;
  }
  return true;
}

static bool
container (struct json *j, char open, char close, bool object)
{
  j->p++;                       /* open */
  (void) open;
  if (++j->depth > 64)
    return false;
  ws (j);
  if (peek (j, close)) {
    j->p++;
    j->depth--;
    return true;
  }
  for (;;) {
    ws (j);
    if (object) {
      if (!string (j))
        return false;
      ws (j);
      if (!peek (j, ':'))
        return false;
      j->p++;
    }
    if (!value (j))
      return false;
    ws (j);
    if (peek (j, ',')) {
      j->p++;
      continue;
    }
    if (peek (j, close)) {
      j->p++;
      j->depth--;
      return true;
    }
    return false;
  }
}

static bool
value (struct json *j)
{
  ws (j);
  if (j->p >= j->end)
    return false;
  switch (*j->p) {
  case '{': return container (j, '{', '}', true);
  case '[': return container (j, '[', ']', false);
  case '"': return string (j);
  case 't': return lit (j, "true");
  case 'f': return lit (j, "false");
  case 'n': return lit (j, "null");
  default: return number (j);
  }
}

bool
fuzz_json_valid (const char *s, size_t len)
{
  struct json j = { .p = s, .end = s + len };

  if (!value (&j))
    return false;
  ws (&j);
  return j.p == j.end;
}
