/* nbdkit-remap: micro-benchmark of the in-memory remap table and of
 * the on-disk metadata code, without nbdkit.
 *
 * Build (from the top of the tree, after make):
 *   gcc -O2 -I filter -I . bench/table-bench.c \
 *       filter/.libs/libremapcore.a tests/unit/stubs.c -lpthread
 * bench/run-bench.sh does this and appends the output to RESULTS.md.
 *
 * Everything is printed as markdown tables:
 *   (a) lookups per second against table size (1k .. 10M entries, on a
 *       disk with 100 times more sectors than entries);
 *   (b) memory per entry;
 *   (c) time to load a table and to encode/decode a metadata copy;
 *   (d) cost of the metadata write that follows one new remap.
 *
 * Options: -q (quick: smaller sizes and shorter runs, for testing),
 *          -s SEED.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "io.h"
#include "metadata.h"
#include "table.h"

/* Targets from the project's issue 5. */
#define TARGET_LOOKUPS_PER_S 10e6   /* at 1M entries, one core */
#define TARGET_BYTES_PER_ENTRY 32.0 /* at 1M entries */
#define TARGET_LOAD_S 1.0           /* 1M entries */

#define SECTOR_SIZE 4096
#define NR_QUERIES (1u << 20)       /* precomputed query sectors */
#define REPEATS 5                   /* timed runs; the median is shown */

static bool quick;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static double min_run_s = 0.2;      /* each timed lookup run lasts this */

/* Lookup rates at 1M entries, for the summary of the targets. */
static double rate_1m_next, rate_1m_fast, rate_1m_hit;

/* xorshift64*: cheap, good enough to spread queries. */
static uint64_t
rnd (uint64_t *s)
{
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545f4914f6cdd1dULL;
}

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static double
median (double *v, int n)
{
  qsort (v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *
xmalloc (size_t n)
{
  void *p = malloc (n ? n : 1);
  if (p == NULL) {
    fprintf (stderr, "table-bench: out of memory (%zu bytes)\n", n);
    exit (EXIT_FAILURE);
  }
  return p;
}

/* n entries, sorted and unique, one in each run of `spread` sectors at
 * a random place in it: spread uniformly over n*spread sectors.
 */
static struct remap_entry *
make_entries (size_t n, uint64_t spread)
{
  struct remap_entry *e = xmalloc (n * sizeof *e);
  uint64_t s = rng_state ^ n;

  for (size_t i = 0; i < n; i++) {
    e[i].sector = i * spread + rnd (&s) % spread;
    e[i].spare = i;
    e[i].state = REMAP_STATE_REMAPPED;
  }
  return e;
}

static struct remap_table *
make_table (uint64_t nr_sectors, const struct remap_entry *e, size_t n)
{
  struct remap_table *t = remap_table_new (nr_sectors);
  if (t == NULL || remap_table_load (t, e, n) == -1) {
    fprintf (stderr, "table-bench: building a table of %zu entries: %s\n",
             n, strerror (errno));
    exit (EXIT_FAILURE);
  }
  return t;
}

/* ---- (a) lookups ---- */

enum lookup_kind {
  LOOKUP_NEXT,        /* remap_table_next on random sectors */
  LOOKUP_FASTPATH,    /* may_touch, then next only if it may: the data path */
  LOOKUP_HIT,         /* remap_table_next on sectors that are remapped */
};

struct lookup_job {
  struct remap_table *t;
  const uint64_t *q;
  enum lookup_kind kind;
  double seconds;     /* run at least this long */
  uint64_t ops;       /* out */
  double elapsed;     /* out */
  uint64_t found;     /* out: keeps the compiler honest */
};

static void *
lookup_run (void *vp)
{
  struct lookup_job *j = vp;
  struct remap_entry e;
  uint64_t ops = 0, found = 0;
  double t0 = now_s (), t1;

  do {
    switch (j->kind) {
    case LOOKUP_NEXT:
    case LOOKUP_HIT:
      for (uint32_t i = 0; i < NR_QUERIES; i++)
        found += remap_table_next (j->t, j->q[i], j->q[i], &e);
      break;
    case LOOKUP_FASTPATH:
      for (uint32_t i = 0; i < NR_QUERIES; i++)
        if (remap_table_may_touch (j->t, j->q[i], j->q[i]))
          found += remap_table_next (j->t, j->q[i], j->q[i], &e);
      break;
    }
    ops += NR_QUERIES;
    t1 = now_s ();
  } while (t1 - t0 < j->seconds);
  j->ops = ops;
  j->elapsed = t1 - t0;
  j->found = found;
  return NULL;
}

/* Median lookups/s over REPEATS runs with nthreads threads at once
 * (the total of all threads).  *hit_rate is the fraction found.
 */
static double
lookups_per_s (struct remap_table *t, const uint64_t *q,
               enum lookup_kind kind, int nthreads, double *hit_rate)
{
  double rate[REPEATS];
  struct lookup_job jobs[8];
  pthread_t th[8];

  for (int r = 0; r < REPEATS; r++) {
    double total = 0;
    uint64_t ops = 0, found = 0;
    for (int k = 0; k < nthreads; k++) {
      jobs[k] = (struct lookup_job) { .t = t, .q = q, .kind = kind,
                                      .seconds = min_run_s };
      if (nthreads == 1)
        lookup_run (&jobs[k]);
      else if (pthread_create (&th[k], NULL, lookup_run, &jobs[k]) != 0) {
        fprintf (stderr, "table-bench: pthread_create failed\n");
        exit (EXIT_FAILURE);
      }
    }
    for (int k = 0; k < nthreads; k++) {
      if (nthreads > 1)
        pthread_join (th[k], NULL);
      total += jobs[k].ops / jobs[k].elapsed;
      ops += jobs[k].ops;
      found += jobs[k].found;
    }
    rate[r] = total;
    if (hit_rate)
      *hit_rate = (double) found / ops;
  }
  return median (rate, REPEATS);
}

static const char *
mark (bool ok)
{
  return ok ? "ok" : "**MISSED**";
}

static void
bench_lookups (const size_t *sizes, int nsizes, double *mem_per_entry_1m)
{
  long ncpu = sysconf (_SC_NPROCESSORS_ONLN);
  int threads2 = ncpu >= 2 ? 2 : 0;

  printf ("### (a) Lookups per second against table size\n\n");
  printf ("Disk of 100 x entries sectors (4 KiB), entries spread uniformly "
          "(one in every 100 sectors).  One lookup = one call for a "
          "one-sector range, over %u precomputed query sectors; median of "
          "%d runs of %.1f s.\n\n", NR_QUERIES, REPEATS, min_run_s);
  printf ("* **next, random**: `remap_table_next` on uniformly random "
          "sectors (about 1%% are remapped): lock-free index search.\n");
  printf ("* **data path, random**: `remap_table_may_touch` (lock-free "
          "summary bitmap) and `remap_table_next` only if it may touch: what "
          "every request of the filter does.\n");
  printf ("* **next, hits**: `remap_table_next` on sectors that are all "
          "remapped (hit-heavy).\n");
  if (threads2)
    printf ("* **next, random, 2 threads**: the first column with two "
            "threads at once (total), to show whether readers contend.\n");
  printf ("\nTarget: >= %.0f M lookups/s on one core at 1M entries.\n\n",
          TARGET_LOOKUPS_PER_S / 1e6);

  printf ("| entries | disk sectors | next, random (M/s) | "
          "data path, random (M/s) | next, hits (M/s) |%s bytes/entry "
          "(all) | of which summary bitmap | curve (next, random) |\n",
          threads2 ? " next, random, 2 threads (M/s) |" : "");
  printf ("|---:|---:|---:|---:|---:|%s---:|---:|:---|\n",
          threads2 ? "---:|" : "");

  for (int i = 0; i < nsizes; i++) {
    size_t n = sizes[i];
    uint64_t nr_sectors = (uint64_t) n * 100;
    struct remap_entry *e = make_entries (n, 100);
    struct remap_table *t = make_table (nr_sectors, e, n);
    struct remap_table *empty = remap_table_new (nr_sectors);
    uint64_t *q = xmalloc (NR_QUERIES * sizeof *q);
    uint64_t *qh = xmalloc (NR_QUERIES * sizeof *qh);
    uint64_t s = rng_state + i;
    double hr_rand, hr_fast, hr_hit;
    double r_next, r_fast, r_hit, r_two = 0;
    double mem, mem_summary;
    char bar[64];
    int len;

    for (uint32_t k = 0; k < NR_QUERIES; k++) {
      q[k] = rnd (&s) % nr_sectors;
      qh[k] = e[rnd (&s) % n].sector;
    }
    r_next = lookups_per_s (t, q, LOOKUP_NEXT, 1, &hr_rand);
    r_fast = lookups_per_s (t, q, LOOKUP_FASTPATH, 1, &hr_fast);
    r_hit = lookups_per_s (t, qh, LOOKUP_HIT, 1, &hr_hit);
    if (threads2)
      r_two = lookups_per_s (t, q, LOOKUP_NEXT, 2, NULL);
    if (hr_hit < 0.999 || hr_rand > 0.05 || hr_fast > 0.05) {
      fprintf (stderr, "table-bench: unexpected hit rates %.3f %.3f %.3f\n",
               hr_rand, hr_fast, hr_hit);
      exit (EXIT_FAILURE);
    }
    mem = (double) remap_table_memory (t) / n;
    mem_summary = (double) remap_table_memory (empty) / n;
    if (n == 1000000) {
      if (mem_per_entry_1m)
        *mem_per_entry_1m = mem;
      rate_1m_next = r_next;
      rate_1m_fast = r_fast;
      rate_1m_hit = r_hit;
    }

    len = (int) (r_next / 1e6 / 2 + 0.5);    /* one # per 2 M/s */
    if (len > 40) len = 40;
    memset (bar, '#', len);
    bar[len] = '\0';

    printf ("| %zu | %" PRIu64 " | %.1f%s | %.1f | %.1f%s |", n, nr_sectors,
            r_next / 1e6,
            n == 1000000 && r_next < TARGET_LOOKUPS_PER_S ? " **MISSED**" : "",
            r_fast / 1e6, r_hit / 1e6,
            n == 1000000 && r_hit < TARGET_LOOKUPS_PER_S ? " **MISSED**" : "");
    if (threads2)
      printf (" %.1f |", r_two / 1e6);
    printf (" %.1f | %.1f | `%s` |\n", mem, mem_summary, bar);
    fflush (stdout);

    remap_table_free (empty);
    remap_table_free (t);
    free (q);
    free (qh);
    free (e);
  }
  printf ("\nbytes/entry = `remap_table_memory` / entries; the summary "
          "bitmap (1 bit per sector up to 2^27 sectors, at most 16 MiB) "
          "depends on the disk size, not on the number of entries.\n\n");
}

/* ---- (c) load, encode and decode ---- */

static void
bench_load (size_t n, double *load_s_out)
{
  struct remap_entry *e = make_entries (n, 100);
  struct remap_entry *out = xmalloc (n * sizeof *out);
  unsigned char *table = xmalloc (n * REMAP_ENTRY_BYTES);
  unsigned char hbuf[REMAP_HEADER_BYTES];
  uint64_t nr_sectors = (uint64_t) n * 100;
  struct remap_geometry geo;
  struct remap_header h, hd;
  char why[256];
  double t_new[REPEATS], t_load[REPEATS], t_enc[REPEATS], t_dec[REPEATS];

  /* External layout: the export is the whole disk, one spare per
   * entry so that every entry is valid.
   */
  if (remap_geometry_compute (&geo, false, nr_sectors * SECTOR_SIZE,
                              SECTOR_SIZE, n, why, sizeof why) == -1) {
    fprintf (stderr, "table-bench: geometry: %s\n", why);
    exit (EXIT_FAILURE);
  }
  memset (&h, 0, sizeof h);
  h.geo = geo;
  h.generation = 1;
  h.entry_count = n;

  for (int r = 0; r < REPEATS; r++) {
    double t0 = now_s ();
    struct remap_table *t = remap_table_new (nr_sectors);
    double t1 = now_s ();
    if (t == NULL || remap_table_load (t, e, n) == -1) {
      fprintf (stderr, "table-bench: load failed\n");
      exit (EXIT_FAILURE);
    }
    double t2 = now_s ();
    t_new[r] = t1 - t0;
    t_load[r] = t2 - t1;
    remap_table_free (t);

    t0 = now_s ();
    remap_entries_encode (e, n, table);
    remap_header_encode (&h, table, hbuf);
    t1 = now_s ();
    enum remap_decode_status st = remap_header_decode (hbuf, &hd);
    if (st == REMAP_DECODE_OK)
      st = remap_entries_decode (&hd, hbuf, table, out);
    if (st != REMAP_DECODE_OK) {
      fprintf (stderr, "table-bench: decoding a copy of %zu entries "
               "failed: %s\n", n, remap_decode_strerror (st));
      exit (EXIT_FAILURE);
    }
    t2 = now_s ();
    t_enc[r] = t1 - t0;
    t_dec[r] = t2 - t1;
    if (memcmp (out, e, n * sizeof *e) != 0) {
      fprintf (stderr, "table-bench: decoded entries differ\n");
      exit (EXIT_FAILURE);
    }
  }
  double new_s = median (t_new, REPEATS), load_s = median (t_load, REPEATS);
  double enc_s = median (t_enc, REPEATS), dec_s = median (t_dec, REPEATS);
  if (load_s_out)
    *load_s_out = load_s + new_s;
  printf ("| %zu | %.2f | %.2f | %.2f%s | %.2f | %.2f | %.0f |\n", n,
          new_s * 1e3, load_s * 1e3,
          (new_s + load_s) * 1e3,
          n == 1000000 && new_s + load_s >= TARGET_LOAD_S ? " **MISSED**" : "",
          enc_s * 1e3, dec_s * 1e3,
          n * REMAP_ENTRY_BYTES / dec_s / (1 << 20));
  fflush (stdout);
  free (e);
  free (out);
  free (table);
}

/* ---- (d) metadata sync after one new remap ---- */

struct fake_store {
  unsigned char *sink;          /* REMAP_IO_MAX bytes, written over */
  uint64_t bytes, writes, flushes;
};

static int
fake_pread (void *opaque, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  (void) opaque; (void) offset; (void) flags; (void) err;
  memset (buf, 0, count);
  return 0;
}

static int
fake_pwrite (void *opaque, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  struct fake_store *fs = opaque;
  (void) offset; (void) flags; (void) err;
  /* Copy it, so that the memory traffic of a real write is paid. */
  memcpy (fs->sink, buf, count <= REMAP_IO_MAX ? count : REMAP_IO_MAX);
  fs->bytes += count;
  fs->writes++;
  return 0;
}

static int
fake_flush (void *opaque, int *err)
{
  struct fake_store *fs = opaque;
  (void) err;
  fs->flushes++;
  return 0;
}

static void
bench_sync (size_t n)
{
  /* Room for the n entries and the new ones. */
  uint32_t spares = n + 64;
  uint64_t nr_sectors = (uint64_t) n * 100 + 1000;
  struct remap_entry *e = make_entries (n, 100);
  struct remap_table *t = make_table (nr_sectors, e, n);
  struct fake_store fs = { .sink = xmalloc (REMAP_IO_MAX) };
  struct remap_io io = {
    .opaque = &fs, .pread = fake_pread, .pwrite = fake_pwrite,
    .flush = fake_flush,
  };
  struct remap_metadata md;
  char why[256];
  double t_ins[REPEATS], t_snap[REPEATS], t_write[REPEATS];
  uint64_t bytes = 0, writes = 0, flushes = 0;
  uint64_t s = rng_state ^ 0xd1b54a32d192ed03ULL;

  memset (&md, 0, sizeof md);
  if (remap_geometry_compute (&md.geo, false, nr_sectors * SECTOR_SIZE,
                              SECTOR_SIZE, spares, why, sizeof why) == -1) {
    fprintf (stderr, "table-bench: geometry: %s\n", why);
    exit (EXIT_FAILURE);
  }
  md.store = &io;
  md.generation = 1;
  for (int i = 0; i < REMAP_COPIES; i++)
    md.copy_valid[i] = true;

  for (int r = 0; r < REPEATS; r++) {
    struct remap_entry ne, *snap = NULL;
    ssize_t count;
    bool degraded;
    int err;

    /* A new remap of a sector that has none yet. */
    do
      ne.sector = rnd (&s) % nr_sectors;
    while (remap_table_lookup (t, ne.sector, &ne));
    ne.spare = n + r;
    ne.state = REMAP_STATE_REMAPPED;

    double t0 = now_s ();
    if (remap_table_insert (t, &ne) == -1) {
      fprintf (stderr, "table-bench: insert: %s\n", strerror (errno));
      exit (EXIT_FAILURE);
    }
    double t1 = now_s ();
    count = remap_table_snapshot (t, REMAP_STATE_REMAPPED |
                                  REMAP_STATE_PENDING, &snap);
    double t2 = now_s ();
    if (count != (ssize_t) (n + r + 1)) {
      fprintf (stderr, "table-bench: snapshot has %zd entries\n", count);
      exit (EXIT_FAILURE);
    }
    fs.bytes = fs.writes = fs.flushes = 0;
    if (remap_metadata_write (&md, snap, count, &degraded, &err) == -1 ||
        degraded) {
      fprintf (stderr, "table-bench: metadata write: %s\n", strerror (err));
      exit (EXIT_FAILURE);
    }
    double t3 = now_s ();
    t_ins[r] = t1 - t0;
    t_snap[r] = t2 - t1;
    t_write[r] = t3 - t2;
    bytes = fs.bytes;
    writes = fs.writes;
    flushes = fs.flushes;
    free (snap);
  }
  double ins = median (t_ins, REPEATS), snap = median (t_snap, REPEATS);
  double wr = median (t_write, REPEATS);
  printf ("| %zu | %.3f | %.3f | %.3f | %.3f | %" PRIu64 " (%.1f MiB) | "
          "%" PRIu64 " | %" PRIu64 " |\n",
          n, ins * 1e3, snap * 1e3, wr * 1e3, (ins + snap + wr) * 1e3,
          bytes, bytes / 1048576.0, writes, flushes);
  fflush (stdout);
  remap_table_free (t);
  free (e);
  free (fs.sink);
}

int
main (int argc, char *argv[])
{
  static const size_t full_sizes[] = { 1000, 100000, 1000000, 10000000 };
  static const size_t quick_sizes[] = { 1000, 100000, 1000000 };
  const size_t *sizes = full_sizes;
  int nsizes = 4, opt;
  double mem_1m = 0, load_1m = 0;

  while ((opt = getopt (argc, argv, "qs:")) != -1) {
    switch (opt) {
    case 'q':
      quick = true;
      break;
    case 's':
      rng_state = strtoull (optarg, NULL, 0) | 1;
      break;
    default:
      fprintf (stderr, "usage: %s [-q] [-s SEED]\n", argv[0]);
      return EXIT_FAILURE;
    }
  }
  if (quick) {
    sizes = quick_sizes;
    nsizes = 3;
    min_run_s = 0.05;
  }

  printf ("## Table and metadata micro-benchmark (bench/table-bench.c)\n\n");
  bench_lookups (sizes, nsizes, &mem_1m);

  printf ("### (b) Memory per entry\n\n");
  printf ("At 1M entries (disk of 100M sectors): %.1f bytes/entry "
          "(target <= %.0f): %s.  See the bytes/entry columns above for "
          "the other sizes.\n\n", mem_1m, TARGET_BYTES_PER_ENTRY,
          mark (mem_1m <= TARGET_BYTES_PER_ENTRY));

  printf ("### (c) Loading a table, encoding and decoding a metadata "
          "copy\n\n");
  printf ("new = `remap_table_new` (allocates the summary bitmap); load = "
          "`remap_table_load` of sorted entries; encode = "
          "`remap_entries_encode` + `remap_header_encode` (CRC32C); decode "
          "= `remap_header_decode` + `remap_entries_decode` (CRC32C and "
          "validation).  Median of %d.  Target: new + load of 1M entries "
          "< %.0f s.\n\n", REPEATS, TARGET_LOAD_S);
  printf ("| entries | new (ms) | load (ms) | new + load (ms) | encode (ms) "
          "| decode (ms) | decode (MiB/s) |\n");
  printf ("|---:|---:|---:|---:|---:|---:|---:|\n");
  bench_load (1000000, &load_1m);
  if (!quick)
    bench_load (10000000, NULL);
  printf ("\n");

  printf ("### (d) Metadata write after one new remap\n\n");
  printf ("A table of N entries gets one new remap: `remap_table_insert`, "
          "then what the sync thread does, `remap_table_snapshot` and "
          "`remap_metadata_write` (both copies, each table + header + "
          "flush) into an in-memory store that copies and counts every "
          "byte written.  Median of %d.\n\n", REPEATS);
  printf ("| entries | insert (ms) | snapshot (ms) | metadata write (ms) | "
          "total (ms) | bytes written per sync | pwrite calls | flushes |\n");
  printf ("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  bench_sync (1000);
  bench_sync (100000);
  bench_sync (1000000);
  printf ("\n");

  printf ("### Targets\n\n");
  printf ("| target | result | |\n|:---|---:|:---|\n");
  printf ("| 1M entries: memory <= %.0f bytes/entry | %.1f | %s |\n",
          TARGET_BYTES_PER_ENTRY, mem_1m,
          mark (mem_1m <= TARGET_BYTES_PER_ENTRY));
  printf ("| 1M entries: new + load < %.0f s | %.3f s | %s |\n",
          TARGET_LOAD_S, load_1m, mark (load_1m < TARGET_LOAD_S));
  printf ("| 1M entries: >= %.0f M lookups/s on one core, next, random | "
          "%.1f M/s | %s |\n", TARGET_LOOKUPS_PER_S / 1e6, rate_1m_next / 1e6,
          mark (rate_1m_next >= TARGET_LOOKUPS_PER_S));
  printf ("| 1M entries: >= %.0f M lookups/s on one core, data path, random | "
          "%.1f M/s | %s |\n", TARGET_LOOKUPS_PER_S / 1e6, rate_1m_fast / 1e6,
          mark (rate_1m_fast >= TARGET_LOOKUPS_PER_S));
  printf ("| 1M entries: >= %.0f M lookups/s on one core, next, hits | "
          "%.1f M/s | %s |\n\n", TARGET_LOOKUPS_PER_S / 1e6, rate_1m_hit / 1e6,
          mark (rate_1m_hit >= TARGET_LOOKUPS_PER_S));
  return EXIT_SUCCESS;
}
