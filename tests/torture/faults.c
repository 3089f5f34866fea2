/* nbdkit-remap torture test: the fault controller.
 *
 * Keeps the badsector filter's list file (tests/badsector/badsector.c)
 * and changes one line at a time: a fault on an origin sector (mostly
 * in the clients' hot area) or on a spare sector (internal mode), of
 * kind read, write, rw, read-once or write-once; sometimes the whole
 * spare area failing writes, so that a relocation has nowhere to go;
 * a delay of every read or write (which widens the windows in which
 * requests race with remaps); or a fault healed by removing its line.
 *
 * The file is replaced by rename, so the filter sees either the old
 * or the new list.  The model is told of a new fault before the file
 * changes and of a healed one after: the model's window in which a
 * fault may act is never shorter than the filter's.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torture.h"

#define MAX_FAULTS 72            /* max_active, plus the temporary ones */
#define SPARES_TARGETED 32      /* spares are used from the start */

enum fkind { F_READ, F_WRITE, F_RW, F_READ_ONCE, F_WRITE_ONCE, NR_FKINDS,
             F_DELAY_READ = NR_FKINDS, F_DELAY_WRITE };

static const char *const fkind_name[] = {
  "read", "write", "rw", "read-once", "write-once", "delay-read",
  "delay-write",
};

struct fault {
  enum fkind kind;
  uint64_t first, last;         /* badsector sectors (UNIT bytes) */
  bool spare;
};

static struct fault_cfg cfg;
static struct fault active[MAX_FAULTS];
static int nr_active;
static uint64_t injected;

static bool
fails_reads (enum fkind k)
{
  return k == F_READ || k == F_RW || k == F_READ_ONCE;
}

static void
write_list (void)
{
  char tmp[512];
  FILE *f;

  snprintf (tmp, sizeof tmp, "%s.new", cfg.list);
  f = fopen (tmp, "w");
  if (!f) {
    perror (tmp);
    exit (2);
  }
  fprintf (f, "# written by the torture test\n");
  for (int i = 0; i < nr_active; i++)
    if (active[i].kind >= NR_FKINDS)
      fprintf (f, "%s %" PRIu64 "\n", fkind_name[active[i].kind],
               active[i].first);
    else
      fprintf (f, "%s %" PRIu64 "-%" PRIu64 "\n", fkind_name[active[i].kind],
               active[i].first, active[i].last);
  if (fclose (f) != 0 || rename (tmp, cfg.list) != 0) {
    perror (cfg.list);
    exit (2);
  }
}

void
faults_init (struct fault_cfg *c)
{
  cfg = *c;
  if (cfg.max_active > MAX_FAULTS - 8)
    cfg.max_active = MAX_FAULTS - 8;
  nr_active = 0;
  write_list ();
}

/* Tells the model about fault F turning on or off. */
static void
tell_model (const struct fault *f, bool on)
{
  const char *what = f->spare ? "spare" : "origin";

  if (f->kind >= NR_FKINDS) {
    model_event (UINT64_MAX, "%s %s %" PRIu64 " ms", on ? "new" : "no more",
                 fkind_name[f->kind], f->first);
    return;
  }
  if (f->first == f->last)
    model_event (f->spare ? UINT64_MAX : f->first, "%s %s fault on %s "
                 "sector %" PRIu64, on ? "new" : "healed",
                 fkind_name[f->kind], what, f->first);
  else
    model_event (UINT64_MAX, "%s %s fault on %s sectors %" PRIu64 "-%"
                 PRIu64, on ? "new" : "healed", fkind_name[f->kind], what,
                 f->first, f->last);
  if (f->spare) {
    if (fails_reads (f->kind))
      model_spare_read_fault (on);
    return;
  }
  for (uint64_t u = f->first; u <= f->last; u++)
    model_origin_fault (u, fails_reads (f->kind), on);
}

static bool
fails_writes (enum fkind k)
{
  return k == F_WRITE || k == F_RW || k == F_WRITE_ONCE;
}

/* A kind of fault that the classes asked for allow, or -1. */
static int
pick_kind (uint64_t *s, bool reads, bool writes)
{
  for (int tries = 0; tries < 50; tries++) {
    enum fkind k = rng_next (s) % NR_FKINDS;
    if ((!fails_reads (k) || reads) && (!fails_writes (k) || writes))
      return k;
  }
  return -1;
}

/* A delay of every read or write, if there is none of that kind. */
static bool
add_delay (uint64_t *s)
{
  struct fault f = { .kind = F_DELAY_READ + rng_next (s) % 2,
                     .first = 1 + rng_next (s) % 6 };

  for (int i = 0; i < nr_active; i++)
    if (active[i].kind == f.kind)
      return false;
  tell_model (&f, true);
  active[nr_active++] = f;
  write_list ();
  return true;
}

static void
add (uint64_t *s)
{
  struct fault f = { 0 };
  bool spare_ok = cfg.spare_count && (cfg.spare_read || cfg.spare_write);
  bool origin_ok = cfg.origin_read || cfg.origin_write;
  int k;

  if (cfg.delay && (rng_next (s) % 100 < 15 || !(spare_ok || origin_ok)) &&
      add_delay (s))
    return;
  f.spare = spare_ok && (!origin_ok || rng_next (s) % 10 < 3);
  k = f.spare ? pick_kind (s, cfg.spare_read, cfg.spare_write) :
    pick_kind (s, cfg.origin_read, cfg.origin_write);
  if (k == -1)
    return;
  f.kind = k;
  if (f.spare) {
    if (cfg.spare_write && rng_next (s) % 8 == 0) {
      /* No spare can be written: relocations must fail safely. */
      f.kind = F_WRITE;
      f.first = cfg.spare_first;
      f.last = cfg.spare_first + cfg.spare_count - 1;
    }
    else {
      uint64_t n = cfg.spare_count < SPARES_TARGETED ? cfg.spare_count :
        SPARES_TARGETED;
      f.first = f.last = cfg.spare_first + rng_next (s) % n;
    }
  }
  else {
    uint64_t area = rng_next (s) % 10 < 8 ? cfg.hot_units : cfg.export_units;
    f.first = f.last = rng_next (s) % area;
  }
  tell_model (&f, true);
  active[nr_active++] = f;
  injected++;
  write_list ();
}

static void
heal (uint64_t *s)
{
  int i = rng_next (s) % nr_active;
  struct fault f = active[i];

  active[i] = active[--nr_active];
  write_list ();
  tell_model (&f, false);
}

void
faults_step (uint64_t *s)
{
  if (!(cfg.origin_read || cfg.origin_write || cfg.spare_read ||
        (cfg.spare_write && cfg.spare_count) || cfg.delay))
    return;
  if (nr_active < cfg.max_active &&
      (nr_active == 0 || rng_next (s) % 100 < 55))
    add (s);
  else if (nr_active)
    heal (s);
}

void
faults_delay_writes (uint64_t ms)
{
  struct fault f = { .kind = F_DELAY_WRITE, .first = ms };

  for (int i = 0; i < nr_active; i++)
    if (active[i].kind == F_DELAY_WRITE) {
      active[i] = active[--nr_active];
      break;
    }
  if (ms)
    active[nr_active++] = f;
  write_list ();
  tell_model (&f, ms != 0);
}

bool
faults_spares_unreadable (bool on)
{
  struct fault f = { .kind = F_READ, .spare = true,
                     .first = cfg.spare_first,
                     .last = cfg.spare_first + cfg.spare_count - 1 };

  if (!cfg.spare_count)
    return false;
  if (on) {
    tell_model (&f, true);
    active[nr_active++] = f;
    write_list ();
    injected++;
    return true;
  }
  for (int i = 0; i < nr_active; i++)
    if (active[i].spare && active[i].kind == F_READ &&
        active[i].first == f.first && active[i].last == f.last) {
      active[i] = active[--nr_active];
      write_list ();
      tell_model (&f, false);
      break;
    }
  return true;
}

void
faults_clear (void)
{
  struct fault old[MAX_FAULTS];
  int n = nr_active;

  memcpy (old, active, sizeof old);
  nr_active = 0;
  write_list ();
  for (int i = 0; i < n; i++)
    tell_model (&old[i], false);
}

uint64_t
faults_injected (void)
{
  return injected;
}
