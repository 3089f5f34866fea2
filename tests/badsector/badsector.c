/* nbdkit-badsector-filter: a test-only filter that injects I/O
 * errors, lost writes and delays at sectors listed in a text file.
 *
 * The test suite puts it underneath the remap filter as a
 * deterministic stand-in for failing media.  The list is re-read
 * whenever the file changes, so a test can alter the failures while
 * the server is running.
 *
 * Parameters:
 *   badsector-file=FILE        (required) the list; need not exist yet
 *   badsector-sector-size=N    unit of the sector numbers (default 4096)
 *   badsector-serialize=yes    declare the thread model
 *                              SERIALIZE_ALL_REQUESTS, and log every call
 *                              that overlaps another ("badsector:
 *                              overlapping calls"), which a plugin with
 *                              that model must never see
 *
 * File format, one directive per line; '#' starts a comment which
 * runs to the end of the line; blank lines are ignored; fields are
 * separated by spaces or tabs:
 *
 *   read        FIRST[-LAST]   preads touching these sectors fail (EIO)
 *   write       FIRST[-LAST]   pwrites/zeroes touching them fail (EIO)
 *   rw          FIRST[-LAST]   both of the above
 *   read-once   FIRST[-LAST]   the next pread touching each sector fails,
 *                              after which that sector works
 *   write-once  FIRST[-LAST]   likewise for pwrite/zero
 *   drop        FIRST[-LAST]   pwrites/zeroes "succeed" but the bytes in
 *                              these sectors are silently not written
 *   writeback   FIRST[-LAST]   like the kernel's page cache over failing
 *                              media: pwrites/zeroes to these sectors
 *                              succeed into a cache, and reads see the
 *                              cached bytes; the next flush or FUA write
 *                              (from any connection) writes the cache
 *                              back, which fails for these sectors: their
 *                              cached bytes are dropped (reads see the
 *                              old media contents again), and every
 *                              context (each connection, and a filter's
 *                              own context) is told once, by EIO from its
 *                              next flush or FUA write, as Linux's errseq
 *                              tells each open file.  A sector cached
 *                              while listed fails even if its line is
 *                              removed before the writeback.
 *   delay-read  MS             every pread first sleeps MS milliseconds
 *   delay-write MS             every pwrite/zero/flush first sleeps MS ms
 *   delay-writeback MS         a FUA pwrite/zero sleeps MS ms after its
 *                              data is written (or cached) and before it
 *                              starts the writeback, so that a test can
 *                              put a flush in between
 *
 * Sectors are unsigned 64-bit decimal numbers, counted in units of
 * badsector-sector-size from byte 0 of the underlying plugin, and
 * FIRST <= LAST.  A request touches a sector if any byte of the
 * request lies in it.
 */


#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "list.h"
#include "writeback.h"

/* Callbacks must match the filter API even where they ignore an
 * argument; the project builds with -Wextra.
 */
#define UNUSED __attribute__ ((unused))

static uint32_t sector_size = 4096;
static bool serialize;                  /* badsector-serialize=yes */
static unsigned in_flight;              /* atomic: calls under way */
static uint64_t overlaps;               /* atomic */

/* Per context: the writeback errors it has been told about. */
struct handle {
  uint64_t wb_seen;                     /* atomic */
};


static void
sleep_ms (uint32_t ms)
{
  struct timespec ts = {
    .tv_sec = ms / 1000,
    .tv_nsec = (long) (ms % 1000) * 1000000,
  };

  /* nanosleep leaves the remaining time in ts when interrupted. */
  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* badsector-serialize=yes: every call through this filter is counted
 * while under way, its delay included; one that finds another under
 * way is an overlap the server and the filters above must not cause.
 */
static void
call_begin (void)
{
  if (serialize &&
      __atomic_add_fetch (&in_flight, 1, __ATOMIC_SEQ_CST) > 1) {
    uint64_t n = __atomic_add_fetch (&overlaps, 1, __ATOMIC_SEQ_CST);
    nbdkit_error ("badsector: overlapping calls to a plugin that "
                  "serializes all requests (%" PRIu64 " so far)", n);
  }
}

static void
call_end (void)
{
  if (serialize)
    __atomic_sub_fetch (&in_flight, 1, __ATOMIC_SEQ_CST);
}

static void
badsector_unload (void)
{
  list_unload ();
  wb_free ();
}

static int
badsector_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
                  const char *key, const char *value)
{
  if (strcmp (key, "badsector-file") == 0)
    return list_set_file (value);
  else if (strcmp (key, "badsector-sector-size") == 0) {
    int64_t r = nbdkit_parse_size (value);

    if (r == -1)
      return -1;
    if (r < 512 || r > 65536 || (r & (r - 1)) != 0) {
      nbdkit_error ("badsector-sector-size must be a power of two "
                    "between 512 and 65536: %s", value);
      return -1;
    }
    sector_size = r;
    return 0;
  }
  else if (strcmp (key, "badsector-serialize") == 0) {
    int r = nbdkit_parse_bool (value);

    if (r == -1)
      return -1;
    serialize = r;
    return 0;
  }
  else
    return next (nxdata, key, value);
}

static int
badsector_config_complete (nbdkit_next_config_complete *next,
                           nbdkit_backend *nxdata)
{
  if (!list_has_file ()) {
    nbdkit_error ("the badsector-file parameter is required");
    return -1;
  }
  return next (nxdata);
}

#define badsector_config_help \
  "badsector-file=<FILE>      (required) List of sectors to misbehave.\n" \
  "badsector-sector-size=<N>  Unit of the sector numbers (default 4096).\n" \
  "badsector-serialize=yes    Declare SERIALIZE_ALL_REQUESTS, log overlaps."

static int
badsector_thread_model (void)
{
  return serialize ? NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS
    : NBDKIT_THREAD_MODEL_PARALLEL;
}

static int
badsector_get_ready (int thread_model UNUSED)
{
  /* Load the list now so that mistakes in it show up at startup. */
  pthread_mutex_lock (&list_lock);
  refresh_list_locked ();
  pthread_mutex_unlock (&list_lock);
  return 0;
}

static void *
badsector_open (nbdkit_next_open *next, nbdkit_context *nxdata,
                int readonly, const char *exportname, int is_tls UNUSED)
{
  struct handle *h;

  if (next (nxdata, readonly, exportname) == -1)
    return NULL;
  h = malloc (sizeof *h);
  if (h == NULL) {
    nbdkit_error ("badsector: malloc: %m");
    return NULL;
  }
  /* Like a file opened now: earlier errors are not its to hear. */
  h->wb_seen = wb_errors ();
  return h;
}

static void
badsector_close (void *handle)
{
  free (handle);
}

/* Refresh the list and return the delay for this kind of request. */
static uint32_t
refresh_and_get_delay (bool is_write)
{
  uint32_t ms;

  pthread_mutex_lock (&list_lock);
  refresh_list_locked ();
  ms = is_write ? list.delay_write_ms : list.delay_read_ms;
  pthread_mutex_unlock (&list_lock);
  return ms;
}

/* Writeback, as a flush or a FUA write starts it: every cached sector
 * fails; then this context hears of every error it has not heard of.
 */
static int
writeback (struct handle *h, int *err)
{
  uint64_t now, seen;

  wb_writeback ();
  now = wb_errors ();
  seen = __atomic_exchange_n (&h->wb_seen, now, __ATOMIC_SEQ_CST);
  if (seen == now)
    return 0;
  nbdkit_error ("badsector: writeback failed for %" PRIu64 " sector(s) "
                "since this context last checked", now - seen);
  *err = EIO;
  return -1;
}

static int
badsector_pread (nbdkit_next *next,
                 void *handle UNUSED, void *buf, uint32_t count,
                 uint64_t offset, uint32_t flags, int *err)
{
  uint64_t sector;
  bool fail = false;
  int r;

  call_begin ();
  sleep_ms (refresh_and_get_delay (false));

  if (count > 0) {
    pthread_mutex_lock (&list_lock);
    fail = injected_error_locked (false, offset / sector_size,
                                  (offset + count - 1) / sector_size,
                                  &sector);
    pthread_mutex_unlock (&list_lock);
  }
  if (fail) {
    nbdkit_debug ("badsector: injecting read error at sector %" PRIu64
                  " (request offset %" PRIu64 " count %" PRIu32 ")",
                  sector, offset, count);
    *err = EIO;
    nbdkit_error ("badsector: injected read error at sector %" PRIu64,
                  sector);
    call_end ();
    return -1;
  }

  r = next->pread (next, buf, count, offset, flags, err);
  if (r == 0)
    wb_overlay (sector_size, buf, count, offset);
  call_end ();
  return r;
}

/* Shared by pwrite and zero (buf == NULL): fail, or write everything
 * except the dropped sectors, with the writeback sectors going to the
 * cache; a FUA write then writes the cache back.
 */
static int
do_write (nbdkit_next *next, struct handle *h, const void *buf,
          uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  const unsigned skipped = 1u << KIND_DROP | 1u << KIND_WRITEBACK;
  const uint64_t end = offset + count;
  struct span *spans = NULL, *cached = NULL;
  size_t nspans = 0, ncached = 0, i;
  uint64_t sector, pos;
  uint32_t ms;
  bool fail = false;
  int r = 0;

  sleep_ms (refresh_and_get_delay (true));

  if (count > 0) {
    const uint64_t s0 = offset / sector_size;
    const uint64_t s1 = (end - 1) / sector_size;

    pthread_mutex_lock (&list_lock);
    fail = injected_error_locked (true, s0, s1, &sector);
    if (!fail &&
        (spans_locked (skipped, s0, s1, &spans, &nspans) == -1 ||
         spans_locked (1u << KIND_WRITEBACK, s0, s1, &cached,
                       &ncached) == -1)) {
      pthread_mutex_unlock (&list_lock);
      free (spans);
      *err = ENOMEM;
      return -1;
    }
    pthread_mutex_unlock (&list_lock);
  }
  if (fail) {
    nbdkit_debug ("badsector: injecting write error at sector %" PRIu64
                  " (request offset %" PRIu64 " count %" PRIu32 ")",
                  sector, offset, count);
    *err = EIO;
    nbdkit_error ("badsector: injected write error at sector %" PRIu64,
                  sector);
    return -1;
  }

  /* Write the pieces between the skipped spans.  The spans are
   * clipped to the request, so the arithmetic stays inside it.
   */
  pos = offset;
  for (i = 0; i <= nspans && r == 0; ++i) {
    uint64_t stop = end;

    if (i < nspans) {
      stop = spans[i].first * sector_size;
      if (stop < pos)
        stop = pos;
    }
    if (stop > pos) {
      if (buf)
        r = next->pwrite (next, (const char *) buf + (pos - offset),
                          stop - pos, pos, flags, err);
      else
        r = next->zero (next, stop - pos, pos, flags, err);
    }
    if (i < nspans) {
      pos = (spans[i].last + 1) * sector_size;
      if (pos > end)
        pos = end;
    }
  }
  for (i = 0; i < ncached && r == 0; ++i)
    r = wb_store (next, sector_size, buf, count, offset, cached[i].first,
                  cached[i].last, err);
  if (r == 0 && nspans > ncached)
    nbdkit_debug ("badsector: dropping the %s's bytes in some sectors",
                  buf ? "write" : "zero");
  free (spans);
  free (cached);
  if (r == 0 && (flags & NBDKIT_FLAG_FUA)) {
    pthread_mutex_lock (&list_lock);
    ms = list.delay_writeback_ms;
    pthread_mutex_unlock (&list_lock);
    sleep_ms (ms);
    r = writeback (h, err);
  }
  return r;
}

static int
badsector_pwrite (nbdkit_next *next,
                  void *handle, const void *buf, uint32_t count,
                  uint64_t offset, uint32_t flags, int *err)
{
  int r;

  call_begin ();
  r = do_write (next, handle, buf, count, offset, flags, err);
  call_end ();
  return r;
}

static int
badsector_zero (nbdkit_next *next,
                void *handle, uint32_t count, uint64_t offset,
                uint32_t flags, int *err)
{
  int r;

  call_begin ();
  r = do_write (next, handle, NULL, count, offset, flags, err);
  call_end ();
  return r;
}

static int
badsector_flush (nbdkit_next *next,
                 void *handle, uint32_t flags, int *err)
{
  int r;

  call_begin ();
  sleep_ms (refresh_and_get_delay (true));
  r = next->flush (next, flags, err);
  if (r == 0)
    r = writeback (handle, err);
  call_end ();
  return r;
}

/* The calls below pass through; they are counted for overlaps. */
static int
badsector_trim (nbdkit_next *next, void *handle UNUSED, uint32_t count,
                uint64_t offset, uint32_t flags, int *err)
{
  int r;

  call_begin ();
  r = next->trim (next, count, offset, flags, err);
  call_end ();
  return r;
}

static int
badsector_cache (nbdkit_next *next, void *handle UNUSED, uint32_t count,
                 uint64_t offset, uint32_t flags, int *err)
{
  int r;

  call_begin ();
  r = next->cache (next, count, offset, flags, err);
  call_end ();
  return r;
}

static int
badsector_extents (nbdkit_next *next, void *handle UNUSED, uint32_t count,
                   uint64_t offset, uint32_t flags,
                   struct nbdkit_extents *extents, int *err)
{
  int r;

  call_begin ();
  r = next->extents (next, count, offset, flags, extents, err);
  call_end ();
  return r;
}

static struct nbdkit_filter filter = {
  .name              = "badsector",
  .longname          = "nbdkit badsector filter (test only)",
  .unload            = badsector_unload,
  .config            = badsector_config,
  .config_complete   = badsector_config_complete,
  .config_help       = badsector_config_help,
  .thread_model      = badsector_thread_model,
  .get_ready         = badsector_get_ready,
  .open              = badsector_open,
  .close             = badsector_close,
  .pread             = badsector_pread,
  .pwrite            = badsector_pwrite,
  .zero              = badsector_zero,
  .flush             = badsector_flush,
  .trim              = badsector_trim,
  .cache             = badsector_cache,
  .extents           = badsector_extents,
};

NBDKIT_REGISTER_FILTER (filter)
