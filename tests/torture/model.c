/* nbdkit-remap torture test: the reference model.
 *
 * Every write, zero and trim gets an id, and every 512-byte piece it
 * writes says which: (offset, id, checksum) then bytes derived from
 * both (model_fill), so a read tells exactly which write each piece
 * came from, and bytes nobody wrote (torn, misplaced, invented) do
 * not decode.  Zero, trim and the blank disk all read as zeros: value
 * 0.
 *
 * Per piece the model keeps the versions a read may still return,
 * each with the ticks of its write's start and end.  A read that ran
 * from RS to RE may return version W if W started before RE and no
 * successful write W2 (not a trim: trim is advisory, the old data may
 * stay) both started after W ended and ended before RS.  A failed
 * write never supersedes anything, and stays a candidate: it may or
 * may not have landed.  This is the usual register linearizability
 * check, per piece, without cross-read consistency.
 *
 * A read that overlaps a write of the same piece may return it torn,
 * each byte from one of the versions it may return (torn_legal).
 *
 * EIO is legal only where a fault can explain it.  Per 4 KiB unit the
 * model knows which faults that fail reads touched it (its origin
 * sector, or the spare area while the unit may be remapped) and when
 * the last one healed; a whole-unit write that succeeded after that
 * makes the unit readable again (pending sectors recover, data-lost
 * marks clear), so EIO after it is a violation.  A write may fail
 * only on a unit that had some fault or was remapped.
 *
 * SIGKILL: a write is durable if it had FUA or ended before a flush
 * that succeeded started.  After a crash a piece may hold any version
 * that no durable write superseded (model_crash); the restart's full
 * read then fixes which one it holds (model_settle).
 *
 * One mutex guards everything: the clients spend their time in the
 * server, not here.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torture.h"

#define VALUE_GARBAGE UINT64_MAX
#define HISTORY_SHOWN 24
#define REPORTS_SHOWN 10        /* violations printed in full */

enum status { ST_INFLIGHT, ST_OK, ST_FAILED };

struct rec {                    /* one candidate version of a piece */
  uint64_t id;                  /* the op that wrote it (0: blank) */
  uint64_t value;               /* id for data, 0 for zeros */
  uint64_t start, end;          /* end TICK_NEVER while in flight */
  uint8_t status;
  bool trim, durable;
};

struct piece {
  struct rec *v;
  uint32_t n, cap;
};

struct op {                     /* the log, for histories */
  uint64_t off, start, end;
  uint32_t len;
  uint8_t kind, status;
  bool fua;
  int8_t client;
  int err;
};

struct event {                  /* faults, control commands, kills */
  uint64_t tick, unit;          /* unit UINT64_MAX: every unit */
  char what[56];
};

struct unit {
  uint64_t first_on, last_off, clean_end;
  uint32_t read_faults;         /* active faults failing its reads */
  bool ever_fault, maybe_remapped, spare_part;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t clk;
static uint64_t nr_pieces, nr_units;
static struct piece *pieces;
static struct unit *units;
static struct op *oplog;
static uint64_t nr_ops, cap_ops;
static struct event *events;
static uint64_t nr_events, cap_events;
static uint64_t flush_mark;     /* latest start of a successful flush */
static uint32_t spare_read_faults;
static struct model_stats stats;
static enum plant planted_kind;
static bool planted_done;

uint64_t
torture_tick (void)
{
  return __atomic_add_fetch (&clk, 1, __ATOMIC_SEQ_CST);
}

static uint64_t
mix (uint64_t x)
{
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* One piece of write ID at OFF: offset, id, checksum, then filler. */
static void
fill_piece (uint64_t id, uint64_t off, uint64_t *w)
{
  uint64_t sum = mix (off ^ mix (id));

  w[0] = off;
  w[1] = id;
  for (size_t i = 3; i < PIECE / 8; i++) {
    w[i] = mix (sum + i);
    sum ^= w[i] * (i + 1);
  }
  w[2] = mix (sum);
}

void
model_fill (uint64_t id, uint64_t off, uint32_t len, char *buf)
{
  for (uint32_t i = 0; i < len; i += PIECE)
    fill_piece (id, off + i, (uint64_t *) (buf + i));
}

/* Which version a piece holds: 0 for zeros, an id, or garbage. */
static uint64_t
decode (uint64_t off, const char *p)
{
  uint64_t w[PIECE / 8];
  const uint64_t *got = (const uint64_t *) p;
  bool zero = true;

  for (size_t i = 0; i < PIECE / 8; i++)
    if (got[i]) {
      zero = false;
      break;
    }
  if (zero)
    return 0;
  if (got[0] != off || got[1] == 0 || got[1] >= nr_ops)
    return VALUE_GARBAGE;
  fill_piece (got[1], off, w);
  return memcmp (w, got, PIECE) == 0 ? got[1] : VALUE_GARBAGE;
}

static void
push (struct piece *p, struct rec r)
{
  if (p->n == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 4;
    p->v = realloc (p->v, p->cap * sizeof *p->v);
    if (!p->v) {
      perror ("realloc");
      exit (2);
    }
  }
  p->v[p->n++] = r;
}

static uint64_t
log_op (enum op_kind kind, uint64_t off, uint32_t len, bool fua, int client,
        uint64_t start)
{
  if (nr_ops == cap_ops) {
    cap_ops = cap_ops ? cap_ops * 2 : 65536;
    oplog = realloc (oplog, cap_ops * sizeof *oplog);
    if (!oplog) {
      perror ("realloc");
      exit (2);
    }
  }
  oplog[nr_ops] = (struct op) { .off = off, .len = len, .kind = kind,
    .fua = fua, .client = client, .start = start, .end = TICK_NEVER,
    .status = ST_INFLIGHT };
  return nr_ops++;
}

void
model_init (uint64_t size)
{
  nr_pieces = size / PIECE;
  nr_units = size / UNIT;
  pieces = calloc (nr_pieces, sizeof *pieces);
  units = calloc (nr_units, sizeof *units);
  if (!pieces || !units) {
    perror ("calloc");
    exit (2);
  }
  for (uint64_t i = 0; i < nr_units; i++)
    units[i].clean_end = TICK_NEVER;
  /* Op 0 is the blank disk. */
  log_op (OP_ZERO, 0, 0, true, -1, 0);
  oplog[0].end = 0;
  oplog[0].status = ST_OK;
  for (uint64_t i = 0; i < nr_pieces; i++)
    push (&pieces[i], (struct rec) { .status = ST_OK, .durable = true });
}

uint64_t
model_write_begin (enum op_kind kind, uint64_t off, uint32_t len, bool fua,
                   int client)
{
  uint64_t id;

  pthread_mutex_lock (&lock);
  id = log_op (kind, off, len, fua, client, torture_tick ());
  for (uint64_t p = off / PIECE; p < (off + len) / PIECE; p++)
    push (&pieces[p], (struct rec) { .id = id,
          .value = kind == OP_WRITE ? id : 0, .start = oplog[id].start,
          .end = TICK_NEVER, .status = ST_INFLIGHT, .trim = kind == OP_TRIM });
  stats.ops[kind]++;
  stats.fua += fua;
  pthread_mutex_unlock (&lock);
  return id;
}

static bool
covers_unit (uint64_t off, uint32_t len, uint64_t u)
{
  return off <= u * UNIT && off + len >= (u + 1) * UNIT;
}

void
model_write_end (uint64_t id, int err)
{
  struct op *o;
  uint64_t end;

  pthread_mutex_lock (&lock);
  o = &oplog[id];
  end = torture_tick ();
  o->end = end;
  o->err = err;
  o->status = err ? ST_FAILED : ST_OK;
  for (uint64_t p = o->off / PIECE; p < (o->off + o->len) / PIECE; p++) {
    struct piece *pc = &pieces[p];
    for (uint32_t i = pc->n; i-- > 0; )
      if (pc->v[i].id == id) {
        pc->v[i].end = end;
        pc->v[i].status = o->status;
        pc->v[i].durable = !err && o->fua && o->kind != OP_TRIM;
        break;
      }
  }
  /* A whole-unit write after the unit's faults healed: it reads again. */
  if (!err && o->kind != OP_TRIM)
    for (uint64_t u = o->off / UNIT; u * UNIT < o->off + o->len; u++) {
      struct unit *un = &units[u];
      if (covers_unit (o->off, o->len, u) && un->read_faults == 0 &&
          o->start > un->last_off && end < un->clean_end)
        un->clean_end = end;
    }
  pthread_mutex_unlock (&lock);
}

void
model_flush_ok (uint64_t start)
{
  pthread_mutex_lock (&lock);
  stats.ops[OP_FLUSH]++;
  if (start > flush_mark)
    flush_mark = start;
  pthread_mutex_unlock (&lock);
}

void
model_count_flush_error (void)
{
  pthread_mutex_lock (&lock);
  stats.ops[OP_FLUSH]++;
  stats.flush_errors++;
  pthread_mutex_unlock (&lock);
}

static bool
is_durable (const struct rec *r)
{
  return r->status == ST_OK && !r->trim &&
    (r->durable || r->end < flush_mark);
}

/* Latest start of a successful non-trim write that ended before RS:
 * every version that ended before it is superseded for the read.
 */
static uint64_t
superseded_before (const struct piece *pc, uint64_t rs)
{
  uint64_t m = 0;

  for (uint32_t i = 0; i < pc->n; i++) {
    const struct rec *r = &pc->v[i];
    if (r->status == ST_OK && !r->trim && r->end < rs && r->start > m)
      m = r->start;
  }
  return m;
}

static bool
legal (const struct piece *pc, uint64_t value, uint64_t rs, uint64_t re)
{
  uint64_t m = superseded_before (pc, rs);

  for (uint32_t i = 0; i < pc->n; i++) {
    const struct rec *r = &pc->v[i];
    if (r->value == value && r->start < re && !(r->end < m))
      return true;
  }
  return false;
}

/* A read that overlaps a write of the same piece may see it half
 * copied: neither NBD nor the kernel's page cache make a read atomic
 * against a concurrent write.  Such a piece is legal if a write of it
 * was in flight during the read and every byte of what was read is
 * that byte of some version the read may return (a copy may stop at
 * any byte).
 */
static bool
torn_legal (const struct piece *pc, uint64_t off, const char *p,
            uint64_t rs, uint64_t re)
{
  const uint64_t m = superseded_before (pc, rs);
  uint64_t cand[8][PIECE / 8];
  uint32_t nc = 0;
  bool overlapped = false;

  for (uint32_t i = 0; i < pc->n && nc < 8; i++) {
    const struct rec *r = &pc->v[i];
    if (r->start >= re || r->end < m)
      continue;
    overlapped |= r->end > rs;
    if (r->value)
      fill_piece (r->value, off, cand[nc]);
    else
      memset (cand[nc], 0, sizeof cand[nc]);
    nc++;
  }
  if (!overlapped || nc < 2)
    return false;
  for (size_t b = 0; b < PIECE; b++) {
    uint32_t c;
    for (c = 0; c < nc && ((const char *) cand[c])[b] != p[b]; c++)
      ;
    if (c == nc)
      return false;
  }
  return true;
}

static bool
eio_legal (uint64_t u, uint64_t rs, uint64_t re)
{
  const struct unit *un = &units[u];

  return un->first_on && un->first_on < re && !(un->clean_end < rs);
}

static const char *const kind_name[] = {
  [OP_READ] = "read", [OP_WRITE] = "write", [OP_ZERO] = "zero",
  [OP_TRIM] = "trim", [OP_FLUSH] = "flush",
};

static void
print_value (uint64_t v)
{
  if (v == VALUE_GARBAGE)
    fprintf (stderr, "garbage (bytes no write produced)");
  else if (v == 0)
    fprintf (stderr, "zeros");
  else
    fprintf (stderr, "write #%" PRIu64, v);
}

void
model_event (uint64_t unit, const char *fmt, ...)
{
  va_list ap;

  pthread_mutex_lock (&lock);
  if (nr_events == cap_events) {
    cap_events = cap_events ? cap_events * 2 : 4096;
    events = realloc (events, cap_events * sizeof *events);
    if (!events) {
      perror ("realloc");
      exit (2);
    }
  }
  events[nr_events].tick = torture_tick ();
  events[nr_events].unit = unit;
  va_start (ap, fmt);
  vsnprintf (events[nr_events].what, sizeof events[nr_events].what, fmt, ap);
  va_end (ap);
  nr_events++;
  pthread_mutex_unlock (&lock);
}

static void
print_op (uint64_t i)
{
  const struct op *o = &oplog[i];

  fprintf (stderr, "    tick %" PRIu64 "-", o->start);
  if (o->end == TICK_NEVER)
    fprintf (stderr, "(in flight)");
  else
    fprintf (stderr, "%" PRIu64, o->end);
  fprintf (stderr, ": #%" PRIu64 " client %d %s%s [%" PRIu64 "+%" PRIu32
           "] %s\n", i, o->client, kind_name[o->kind], o->fua ? "+fua" : "",
           o->off, o->len, o->status == ST_OK ? "ok" :
           o->status == ST_FAILED ? strerror (o->err) : "");
}

/* Does op O write the piece at OFF, or another part of its unit
 * near the read (ticks from NEAR on), as a racing read-modify-write
 * would?
 */
static bool
relevant (const struct op *o, uint64_t off, uint64_t near)
{
  uint64_t u = off / UNIT * UNIT;

  if (o->kind == OP_READ)
    return false;
  if (o->off <= off && off < o->off + o->len)
    return true;
  return o->end >= near && o->off < u + UNIT && u < o->off + o->len;
}

/* The writes to the piece at OFF (and those to the rest of its unit
 * close to the read), the faults and commands for its unit and the
 * kills, from SINCE (or the last HISTORY_SHOWN writes) to now, in
 * tick order; READ is the read being reported.
 */
static void
print_history (uint64_t off, uint64_t since, uint64_t read)
{
  uint64_t shown = 0, first = nr_ops, e = 0, u = off / UNIT, from, near;

  near = oplog[read].start > 200 ? oplog[read].start - 200 : 0;
  while (first > 1) {
    const struct op *o = &oplog[first - 1];
    if (o->kind != OP_READ && o->off <= off && off < o->off + o->len &&
        ++shown > HISTORY_SHOWN && first - 1 < since)
      break;
    first--;
  }
  from = first < nr_ops ? oplog[first].start : 0;
  fprintf (stderr, "  history (writes of this piece, other writes of its "
           "unit from tick %" PRIu64 ", events of its unit, from tick %"
           PRIu64 "):\n", near, from);
  while (e < nr_events && events[e].tick < from)
    e++;
  for (uint64_t i = first; i < nr_ops; i++) {
    const struct op *o = &oplog[i];
    if (i != read && !relevant (o, off, near))
      continue;
    for (; e < nr_events && events[e].tick < o->start; e++)
      if (events[e].unit == u || events[e].unit == UINT64_MAX)
        fprintf (stderr, "    tick %" PRIu64 ": %s\n", events[e].tick,
                 events[e].what);
    print_op (i);
  }
  for (; e < nr_events; e++)
    if (events[e].unit == u || events[e].unit == UINT64_MAX)
      fprintf (stderr, "    tick %" PRIu64 ": %s\n", events[e].tick,
               events[e].what);
  fprintf (stderr, "  last successful flush started at tick %" PRIu64 "\n",
           flush_mark);
}

/* For bytes nobody wrote: which version of the piece (or zeros) each
 * 8-byte word of RAW matches, in runs, so that a piece torn between
 * two versions reads differently from one that holds invented bytes.
 */
static void
print_garbage_words (const struct piece *pc, uint64_t off, const char *raw)
{
  const uint64_t *got = (const uint64_t *) raw;
  uint64_t w[PIECE / 8], run_v = 0;
  size_t run_start = 0;

  fprintf (stderr, "\n  its words:");
  for (size_t i = 0; i <= PIECE / 8; i++) {
    uint64_t v = VALUE_GARBAGE;

    if (i < PIECE / 8) {
      if (got[i] == 0)
        v = 0;
      for (uint32_t j = 0; v == VALUE_GARBAGE && j < pc->n; j++) {
        if (pc->v[j].value == 0)
          continue;
        fill_piece (pc->v[j].value, off, w);
        if (w[i] == got[i])
          v = pc->v[j].value;
      }
    }
    if (i > 0 && (i == PIECE / 8 || v != run_v)) {
      fprintf (stderr, " %zu-%zu ", run_start, i - 1);
      print_value (run_v);
      fprintf (stderr, ";");
      run_start = i;
    }
    run_v = v;
  }
}

static void
report_piece (const char *what, uint64_t off, uint64_t observed,
              const char *raw, uint64_t rs, uint64_t re, int client,
              uint64_t read)
{
  const struct piece *pc = &pieces[off / PIECE];
  uint64_t m = superseded_before (pc, rs);
  const struct unit *un = &units[off / UNIT];

  if (++stats.violations > REPORTS_SHOWN)
    return;
  fprintf (stderr, "VIOLATION: %s: piece at offset %" PRIu64 " (unit %"
           PRIu64 "), client %d read during ticks %" PRIu64 "-%" PRIu64
           "\n  observed: ", what, off, off / UNIT, client, rs, re);
  print_value (observed);
  if (observed == VALUE_GARBAGE)
    print_garbage_words (pc, off, raw);
  fprintf (stderr, "\n  expected one of:");
  for (uint32_t i = 0; i < pc->n; i++) {
    const struct rec *r = &pc->v[i];
    if (r->start < re && !(r->end < m)) {
      fprintf (stderr, " ");
      print_value (r->value);
      if (r->trim)
        fprintf (stderr, "(trim)");
    }
  }
  fprintf (stderr, "\n  unit: origin faults %s, maybe remapped %s, faults "
           "failing its reads: %" PRIu32 " now, first at tick %" PRIu64
           ", last healed at %" PRIu64 "\n", un->ever_fault ? "yes" : "never",
           un->maybe_remapped ? "yes" : "no", un->read_faults, un->first_on,
           un->last_off);
  print_history (off, observed == VALUE_GARBAGE ? 0 : observed, read);
}

/* Self-test: make the read look wrong in the way asked. */
static void
plant (uint64_t off, uint32_t len, uint64_t rs, char *buf)
{
  for (uint32_t i = 0; i < len; i += PIECE) {
    const struct piece *pc = &pieces[(off + i) / PIECE];
    uint64_t m = superseded_before (pc, rs);

    if (planted_kind == PLANT_GARBAGE) {
      /* Eight bytes, so that no version it may return explains them
       * all, even as a torn read (torn_legal).
       */
      for (int b = 100; b < 108; b++)
        buf[i + b] ^= 0x5a;
      planted_done = true;
      return;
    }
    for (uint32_t j = 0; j < pc->n; j++)
      if (pc->v[j].end < m && pc->v[j].status == ST_OK && !pc->v[j].trim &&
          !legal (pc, pc->v[j].value, rs, TICK_NEVER)) {
        if (pc->v[j].value)
          model_fill (pc->v[j].value, off + i, PIECE, buf + i);
        else
          memset (buf + i, 0, PIECE);
        fprintf (stderr, "self-test: planting a stale read of piece %" PRIu64
                 " (version %" PRIu64 ")\n", off + i, pc->v[j].value);
        planted_done = true;
        return;
      }
  }
}

uint64_t
model_read_check (uint64_t off, uint32_t len, uint64_t rs, uint64_t re,
                  const char *buf, int err, int client)
{
  uint64_t before, id;
  char *copy = NULL;

  pthread_mutex_lock (&lock);
  before = stats.violations;
  stats.ops[OP_READ]++;
  id = log_op (OP_READ, off, len, false, client, rs);
  oplog[id].end = re;
  oplog[id].err = err;
  oplog[id].status = err ? ST_FAILED : ST_OK;
  if (err) {
    bool ok = false;
    stats.read_eio++;
    for (uint64_t u = off / UNIT; u * UNIT < off + len; u++)
      ok |= err == EIO && eio_legal (u, rs, re);
    if (!ok && ++stats.violations <= REPORTS_SHOWN) {
      fprintf (stderr, "VIOLATION: read [%" PRIu64 "+%" PRIu32 "] by client "
               "%d during ticks %" PRIu64 "-%" PRIu64 " failed with %s, and "
               "no fault can explain it\n", off, len, client, rs, re,
               strerror (err));
      for (uint64_t u = off / UNIT; u * UNIT < off + len; u++)
        fprintf (stderr, "  unit %" PRIu64 ": faults %s, first at tick %"
                 PRIu64 ", readable again from tick %" PRIu64 "\n", u,
                 units[u].ever_fault ? "yes" : "never", units[u].first_on,
                 units[u].clean_end == TICK_NEVER ? 0 : units[u].clean_end);
      print_history (off, 0, id);
    }
  }
  else {
    if (planted_kind != PLANT_NONE && !planted_done) {
      copy = malloc (len);
      memcpy (copy, buf, len);
      plant (off, len, rs, copy);
      buf = copy;
    }
    for (uint32_t i = 0; i < len; i += PIECE) {
      const struct piece *pc = &pieces[(off + i) / PIECE];
      uint64_t v = decode (off + i, buf + i);
      stats.pieces_checked++;
      if (v == VALUE_GARBAGE && torn_legal (pc, off + i, buf + i, rs, re)) {
        stats.pieces_torn++;
        continue;
      }
      if (v == VALUE_GARBAGE || !legal (pc, v, rs, re))
        report_piece (v == VALUE_GARBAGE ? "bytes nobody wrote" :
                      "a version the model does not allow (stale or lost)",
                      off + i, v, buf + i, rs, re, client, id);
    }
  }
  before = stats.violations - before;
  pthread_mutex_unlock (&lock);
  free (copy);
  return before;
}

uint64_t
model_write_error_check (uint64_t off, uint32_t len, int err, uint64_t id)
{
  bool ok = false;

  pthread_mutex_lock (&lock);
  stats.write_errors++;
  for (uint64_t u = off / UNIT; u * UNIT < off + len; u++)
    ok |= units[u].ever_fault || units[u].maybe_remapped;
  /* A FUA write is a write and a flush, and the filter makes it wait
   * for every table change before it to be durable (DURABILITY): it
   * may fail wherever a flush may, which the model always allows.
   */
  ok |= oplog[id].fua;
  if (!ok && ++stats.violations <= REPORTS_SHOWN) {
    fprintf (stderr, "VIOLATION: %s #%" PRIu64 " [%" PRIu64 "+%" PRIu32
             "] failed with %s, but none of its sectors ever had a fault or "
             "a remap\n", kind_name[oplog[id].kind], id, off, len,
             strerror (err));
    print_history (off, 0, id);
  }
  pthread_mutex_unlock (&lock);
  return ok ? 0 : 1;
}

static void
unit_fault_on (struct unit *un, uint64_t now)
{
  un->read_faults++;
  if (!un->first_on)
    un->first_on = now;
  un->clean_end = TICK_NEVER;
}

static void
unit_fault_off (struct unit *un, uint64_t now)
{
  un->read_faults--;
  un->last_off = now;
}

void
model_origin_fault (uint64_t u, bool read, bool on)
{
  pthread_mutex_lock (&lock);
  if (u < nr_units) {
    uint64_t now = torture_tick ();
    units[u].ever_fault = true;
    units[u].maybe_remapped = true;
    if (read && on)
      unit_fault_on (&units[u], now);
    else if (read)
      unit_fault_off (&units[u], now);
    if (spare_read_faults && !units[u].spare_part) {
      units[u].spare_part = true;
      unit_fault_on (&units[u], now);
    }
  }
  pthread_mutex_unlock (&lock);
}

void
model_maybe_remapped (uint64_t u)
{
  pthread_mutex_lock (&lock);
  if (u < nr_units) {
    units[u].maybe_remapped = true;
    if (spare_read_faults && !units[u].spare_part) {
      units[u].spare_part = true;
      unit_fault_on (&units[u], torture_tick ());
    }
  }
  pthread_mutex_unlock (&lock);
}

void
model_spare_read_fault (bool on)
{
  uint64_t now;

  pthread_mutex_lock (&lock);
  now = torture_tick ();
  if (on)
    spare_read_faults++;
  else
    spare_read_faults--;
  for (uint64_t u = 0; u < nr_units; u++) {
    struct unit *un = &units[u];
    if (on && un->maybe_remapped && !un->spare_part) {
      un->spare_part = true;
      unit_fault_on (un, now);
    }
    else if (!on && !spare_read_faults && un->spare_part) {
      un->spare_part = false;
      unit_fault_off (un, now);
    }
  }
  pthread_mutex_unlock (&lock);
}

/* Drops every version of PC that DROP says can never be read again. */
static void
filter_piece (struct piece *pc)
{
  uint64_t m = 0;
  uint32_t k = 0;

  for (uint32_t i = 0; i < pc->n; i++)
    if (is_durable (&pc->v[i]) && pc->v[i].start > m)
      m = pc->v[i].start;
  for (uint32_t i = 0; i < pc->n; i++)
    if (!(pc->v[i].end < m))
      pc->v[k++] = pc->v[i];
  pc->n = k;
}

void
model_prune (void)
{
  pthread_mutex_lock (&lock);
  for (uint64_t p = 0; p < nr_pieces; p++)
    filter_piece (&pieces[p]);
  pthread_mutex_unlock (&lock);
}

void
model_crash (void)
{
  uint64_t now;

  pthread_mutex_lock (&lock);
  now = torture_tick ();
  for (uint64_t p = 0; p < nr_pieces; p++) {
    struct piece *pc = &pieces[p];
    filter_piece (pc);
    /* Whatever is left may be what the disk holds now: all are
     * equally old, none supersedes another.
     */
    for (uint32_t i = 0; i < pc->n; i++) {
      pc->v[i].start = pc->v[i].end = now;
      pc->v[i].status = ST_OK;
      pc->v[i].trim = false;
      pc->v[i].durable = true;
    }
  }
  pthread_mutex_unlock (&lock);
}

void
model_settle (uint64_t off, uint32_t len, const char *buf, int err)
{
  if (err)
    return;
  pthread_mutex_lock (&lock);
  for (uint32_t i = 0; i < len; i += PIECE) {
    struct piece *pc = &pieces[(off + i) / PIECE];
    uint64_t v = decode (off + i, buf + i);
    for (uint32_t j = 0; j < pc->n; j++)
      if (pc->v[j].value == v) {
        pc->v[0] = pc->v[j];
        pc->n = 1;
        break;
      }
  }
  pthread_mutex_unlock (&lock);
}

void
model_plant (enum plant what)
{
  planted_kind = what;
}

bool
model_planted (void)
{
  return planted_done;
}

void
model_count_violation (void)
{
  pthread_mutex_lock (&lock);
  stats.violations++;
  fprintf (stderr, "  the last events (faults, control commands, kills):\n");
  for (uint64_t e = nr_events > 20 ? nr_events - 20 : 0; e < nr_events; e++)
    fprintf (stderr, "    tick %" PRIu64 ": %s%s\n", events[e].tick,
             events[e].what, events[e].unit == UINT64_MAX ? "" : " (unit)");
  pthread_mutex_unlock (&lock);
}

void
model_get_stats (struct model_stats *st)
{
  pthread_mutex_lock (&lock);
  *st = stats;
  pthread_mutex_unlock (&lock);
}
