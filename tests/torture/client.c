/* nbdkit-remap torture test: the client threads.
 *
 * Each thread has its own NBD connection and issues random requests
 * until told to stop: reads, writes (512-byte granular, within one
 * unit, straddling units, or several units long), zero, trim, flush,
 * and FUA on some of the writes and zeros.  Writes go through the
 * model before and after (model_write_begin/end), reads are checked
 * against it when they return.
 *
 * A read never overlaps another client's write, zero or trim in
 * flight (see spans below).
 *
 * When the controller is about to SIGKILL the server it sets `dying`
 * first: a failed request after that says nothing about the filter
 * (its write may or may not have landed; the model keeps it as a
 * candidate), and the thread ends.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libnbd.h>

#include "torture.h"

#define MAX_THREADS 16
#define MAX_LEN (6 * UNIT)
#define VERIFY_CHUNK (256 * 1024)

static struct client_cfg cfg;
static pthread_t threads[MAX_THREADS];
static uint64_t seeds[MAX_THREADS];
static int running;
static bool stop, dying;
static uint64_t ops;
static uint64_t focus = UINT64_MAX; /* a unit most requests go to */
static int focus_writers;           /* clients 0..N-1 go there */
static bool quiet;                  /* no writes: reads and flushes */
static int writing;                 /* clients that may be in a write */

/* A read and a write (or zero, or trim) of the same bytes are never in
 * flight together: below the filter, such a read can return a piece
 * torn between two versions, or half zeroed by a trim's hole (Linux
 * buffered pread is not atomic against pwrite or fallocate), which the
 * model rightly calls bytes nobody wrote.  Writes may overlap writes
 * (the file's writers are serialised), reads may overlap reads.  Slot
 * MAX_THREADS is the controller's clients_read_unit.
 */
struct span {
  uint64_t off;
  uint32_t len;
  bool write, busy;
};
static struct span spans[MAX_THREADS + 1];
static pthread_mutex_t spans_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t spans_cond = PTHREAD_COND_INITIALIZER;

static bool
span_conflicts_locked (int me, uint64_t off, uint32_t len, bool write)
{
  for (int i = 0; i <= MAX_THREADS; i++) {
    const struct span *o = &spans[i];
    if (i != me && o->busy && (o->write || write) &&
        off < o->off + o->len && o->off < off + len)
      return true;
  }
  return false;
}

static void
span_begin (int me, uint64_t off, uint32_t len, bool write)
{
  pthread_mutex_lock (&spans_lock);
  while (span_conflicts_locked (me, off, len, write))
    pthread_cond_wait (&spans_cond, &spans_lock);
  spans[me] = (struct span) { .off = off, .len = len, .write = write,
                              .busy = true };
  pthread_mutex_unlock (&spans_lock);
}

static void
span_end (int me)
{
  pthread_mutex_lock (&spans_lock);
  spans[me].busy = false;
  pthread_cond_broadcast (&spans_cond);
  pthread_mutex_unlock (&spans_lock);
}

uint64_t
rng_next (uint64_t *s)
{
  /* xorshift64* */
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * UINT64_C(2685821657736338717);
}

static uint64_t
below (uint64_t *s, uint64_t n)
{
  return rng_next (s) % n;
}

/* A random PIECE-aligned range of the export. */
static void
pick_range (uint64_t *s, int me, uint64_t *off, uint32_t *len)
{
  uint64_t area = below (s, 10) < 7 ? cfg.hot : cfg.size;
  uint64_t f = __atomic_load_n (&focus, __ATOMIC_SEQ_CST);
  uint32_t pieces;
  int shape = below (s, 10);

  if (f != UINT64_MAX && me < __atomic_load_n (&focus_writers,
                                               __ATOMIC_SEQ_CST) &&
      below (s, 2)) {
    /* Part or all of the focus unit. */
    pieces = 1 + below (s, PIECES_PER_UNIT);
    *len = pieces * PIECE;
    *off = f * UNIT + below (s, PIECES_PER_UNIT - pieces + 1) * PIECE;
    return;
  }
  if (shape < 3)
    pieces = 1;                          /* one piece */
  else if (shape < 6)
    pieces = 1 + below (s, PIECES_PER_UNIT); /* up to a unit */
  else if (shape < 8)
    pieces = PIECES_PER_UNIT;            /* a whole unit, often aligned */
  else
    pieces = 2 + below (s, MAX_LEN / PIECE - 1); /* straddling, multi-unit */
  *len = pieces * PIECE;
  if (shape >= 6 && shape < 8 && below (s, 2))
    *off = below (s, area / UNIT) * UNIT;
  else
    *off = below (s, (area - *len) / PIECE + 1) * PIECE;
}

static bool
is_dying (void)
{
  return __atomic_load_n (&dying, __ATOMIC_SEQ_CST);
}

static void
count (uint64_t *what, uint64_t n)
{
  __atomic_add_fetch (what, n, __ATOMIC_SEQ_CST);
}

static void *
client_thread (void *arg)
{
  int me = (int) (intptr_t) arg;
  uint64_t s = seeds[me];
  struct nbd_handle *h = nbd_create ();
  char *buf = malloc (MAX_LEN);
  bool can_trim, can_zero, can_fua;

  if (!h || !buf || nbd_connect_unix (h, server_socket ()) == -1) {
    if (!is_dying ()) {
      fprintf (stderr, "VIOLATION: client %d cannot connect: %s\n", me,
               nbd_get_error ());
      model_count_violation ();
    }
    goto out;
  }
  can_trim = nbd_can_trim (h) == 1;
  can_zero = nbd_can_zero (h) == 1;
  can_fua = nbd_can_fua (h) == 1;

  while (!__atomic_load_n (&stop, __ATOMIC_SEQ_CST)) {
    uint64_t off, start, end, id;
    uint32_t len;
    int r, err, which = below (&s, 100);
    bool fua = can_fua && below (&s, 100) < 20;

    /* While focused, the others flush often: flushes racing with
     * writes to one remapped unit are what a flush that skips the
     * spare's sync gets wrong.
     */
    if (__atomic_load_n (&focus, __ATOMIC_SEQ_CST) != UINT64_MAX &&
        me >= __atomic_load_n (&focus_writers, __ATOMIC_SEQ_CST) &&
        below (&s, 100) < 30)
      which = 99;
    /* Counted before quiet is looked at: once clients_quiet has seen
     * no writer, none starts.
     */
    __atomic_add_fetch (&writing, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n (&quiet, __ATOMIC_SEQ_CST) && which >= 40)
      which = 99;
    if (which < 40 || which >= 94)
      __atomic_sub_fetch (&writing, 1, __ATOMIC_SEQ_CST);
    pick_range (&s, me, &off, &len);
    count (&ops, 1);
    if (which < 40) {
      span_begin (me, off, len, false);
      start = torture_tick ();
      r = nbd_pread (h, buf, len, off, 0);
      err = r == -1 ? nbd_get_errno () : 0;
      end = torture_tick ();
      span_end (me);
      if (r == -1 && is_dying ())
        break;
      model_read_check (off, len, start, end, buf, err, me);
      continue;
    }
    if (which < 94) {
      enum op_kind kind = which < 80 ? OP_WRITE : which < 87 ? OP_ZERO :
        OP_TRIM;
      if ((kind == OP_ZERO && !can_zero) || (kind == OP_TRIM && !can_trim))
        kind = OP_WRITE;
      span_begin (me, off, len, true);
      id = model_write_begin (kind, off, len, fua, me);
      if (kind == OP_WRITE) {
        model_fill (id, off, len, buf);
        r = nbd_pwrite (h, buf, len, off, fua ? LIBNBD_CMD_FLAG_FUA : 0);
      }
      else if (kind == OP_ZERO)
        r = nbd_zero (h, len, off, (fua ? LIBNBD_CMD_FLAG_FUA : 0) |
                      (below (&s, 2) ? LIBNBD_CMD_FLAG_NO_HOLE : 0));
      else
        r = nbd_trim (h, len, off, fua ? LIBNBD_CMD_FLAG_FUA : 0);
      err = r == -1 ? nbd_get_errno () : 0;
      if (r == -1 && err == 0)
        err = EIO;
      model_write_end (id, err);
      span_end (me);
      __atomic_sub_fetch (&writing, 1, __ATOMIC_SEQ_CST);
      if (r == -1 && is_dying ())
        break;
      if (r == -1)
        model_write_error_check (off, len, err, id);
      continue;
    }
    start = torture_tick ();
    r = nbd_flush (h, 0);
    if (r == 0)
      model_flush_ok (start);
    else if (is_dying ())
      break;
    else
      model_count_flush_error ();
  }
 out:
  if (h) {
    if (!is_dying ())
      nbd_shutdown (h, 0);
    nbd_close (h);
  }
  free (buf);
  return NULL;
}

void
clients_start (struct client_cfg *c, uint64_t seed)
{
  cfg = *c;
  if (cfg.threads > MAX_THREADS)
    cfg.threads = MAX_THREADS;
  stop = dying = quiet = false;
  for (int i = 0; i < cfg.threads; i++) {
    seeds[i] = seed * 1000003 + i * 7919 + 1;
    rng_next (&seeds[i]);
    pthread_create (&threads[i], NULL, client_thread, (void *) (intptr_t) i);
  }
  running = cfg.threads;
}

void
clients_focus (uint64_t unit, int writers)
{
  __atomic_store_n (&focus_writers, writers, __ATOMIC_SEQ_CST);
  __atomic_store_n (&focus, unit, __ATOMIC_SEQ_CST);
}

void
clients_quiet (bool on)
{
  struct timespec ts = { 0, 200000 };

  __atomic_store_n (&quiet, on, __ATOMIC_SEQ_CST);
  /* Bounded: a write stuck in the server is the model's business. */
  for (int i = 0; on && i < 10000 &&
         __atomic_load_n (&writing, __ATOMIC_SEQ_CST); i++)
    nanosleep (&ts, NULL);
}

void
clients_server_dying (void)
{
  __atomic_store_n (&dying, true, __ATOMIC_SEQ_CST);
}

void
clients_stop (void)
{
  __atomic_store_n (&stop, true, __ATOMIC_SEQ_CST);
  for (int i = 0; i < running; i++)
    pthread_join (threads[i], NULL);
  running = 0;
}

uint64_t
clients_ops (void)
{
  return __atomic_load_n (&ops, __ATOMIC_SEQ_CST);
}

/* Reads [OFF, OFF+LEN): checks it, and settles the model to it.  A
 * failed read is retried unit by unit, so one bad unit does not hide
 * the others.
 */
static void
verify_range (struct nbd_handle *h, char *buf, uint64_t off, uint32_t len)
{
  uint64_t start = torture_tick (), end;
  int r = nbd_pread (h, buf, len, off, 0);
  int err = r == -1 ? nbd_get_errno () : 0;

  end = torture_tick ();
  if (r == -1 && len > UNIT) {
    for (uint32_t i = 0; i < len; i += UNIT)
      verify_range (h, buf, off + i, UNIT);
    return;
  }
  model_read_check (off, len, start, end, buf, err, -1);
  model_settle (off, len, buf, err);
}

void
clients_read_unit (uint64_t unit)
{
  struct nbd_handle *h = nbd_create ();
  char buf[UNIT];

  if (h && nbd_connect_unix (h, server_socket ()) == 0) {
    uint64_t start, end;
    int r, err;

    span_begin (MAX_THREADS, unit * UNIT, UNIT, false);
    start = torture_tick ();
    r = nbd_pread (h, buf, UNIT, unit * UNIT, 0);
    err = r == -1 ? nbd_get_errno () : 0;
    end = torture_tick ();
    span_end (MAX_THREADS);
    model_read_check (unit * UNIT, UNIT, start, end, buf, err, -1);
    nbd_shutdown (h, 0);
  }
  else
    fprintf (stderr, "torture: read of unit %" PRIu64 ": connect: %s\n",
             unit, nbd_get_error ());
  if (h)
    nbd_close (h);
}

int
clients_verify_all (uint64_t size)
{
  struct nbd_handle *h = nbd_create ();
  char *buf = malloc (VERIFY_CHUNK);
  int ret = -1;

  if (h && buf && nbd_connect_unix (h, server_socket ()) == 0) {
    for (uint64_t off = 0; off < size; off += VERIFY_CHUNK)
      verify_range (h, buf, off, size - off < VERIFY_CHUNK ? size - off :
                    VERIFY_CHUNK);
    nbd_shutdown (h, 0);
    ret = 0;
  }
  else
    fprintf (stderr, "torture: verify: connect: %s\n", nbd_get_error ());
  if (h)
    nbd_close (h);
  free (buf);
  return ret;
}
