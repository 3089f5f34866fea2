/* nbdkit-remap torture test: the controller (issue 10).
 *
 *   torture --dir DIR [--seed N] [--seconds S] [--ops N] [--kills K]
 *           [--threads T] [--size MiB] [--hot KiB] [--external]
 *           [--powerloss] [--classes LIST] [--max-faults N]
 *           [--step-ms MS] [--plant stale|garbage] [--stop-early]
 *           [--nbdkit-arg ARG]...
 *
 * Starts nbdkit --filter=remap --filter=badsector file DIR/disk.img
 * (with remap-spare=DIR/spare.img if --external; with nbdkit's cache
 * filter in writeback mode under badsector if --powerloss, so that a
 * SIGKILL also loses what was not flushed, like a power cut), runs T
 * client threads against it (client.c), and every STEP-MS on average
 * does one of: change a fault (faults.c), send the control socket a
 * remap, unmap or sync.  Half the remaps race with writes: the unit is
 * unmapped first (its writers then take the fast path), the clients'
 * writes go to it, slowed down, while the remap copies it, then
 * writes stop and the unit is read whole, so that a write the copy
 * lost is seen before another write to its piece hides it.  K times, evenly spread over the run, it
 * SIGKILLs the server, restarts it, and reads the whole export back
 * through the model (model.c), which checks what survived.  At the
 * end the server is stopped with SIGTERM, started once more and read
 * back again.
 *
 * LIST is a comma-separated subset of origin-read, origin-write,
 * spare-read, spare-write, delay, ctl, kill (default: all), so that a fault
 * class whose bug is not fixed yet can be left out.
 *
 * The run ends after S seconds or N operations, whichever is first,
 * (or at the first violation with --stop-early; --plant plants a
 * wrong read in the checker's input, for its self-test, and ends once
 * it is planted) and prints what it did.  Exit status: 0 with no violation, 1 with
 * any (each is printed with its piece, the versions allowed, the one
 * seen and the piece's history), 2 if the test itself could not run.
 * The seed is printed first; --seed replays the same choices (the
 * interleaving with the server differs, so a race may need several
 * tries).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "torture.h"

#define MAX_EXTRA 16
#define PRUNE_EVERY_MS 3000
#define MAX_WRITERS 1000        /* every client */

struct options {
  uint64_t seed, ops, size_mib, hot_kib;
  int seconds, kills, threads, max_faults, step_ms;
  bool external, powerloss, seed_given, stop_early;
  bool origin_read, origin_write, spare_read, spare_write, delay, ctl, kill;
  const char *dir;
  enum plant plant;
  char *extra[MAX_EXTRA];
  int nr_extra;
};

static uint64_t ctl_sent, ctl_failed, kills_done;

static void
usage (void)
{
  fprintf (stderr, "usage: torture --dir DIR [--seed N] [--seconds S] "
           "[--ops N] [--kills K] [--threads T] [--size MiB] [--hot KiB] "
           "[--external] [--powerloss] [--classes LIST] [--max-faults N] "
           "[--step-ms MS] [--plant stale|garbage] [--stop-early] "
           "[--nbdkit-arg ARG]...\n");
  exit (2);
}

static void
parse_classes (struct options *o, const char *list)
{
  char *copy = strdup (list), *save = NULL;

  o->origin_read = o->origin_write = o->spare_read = o->spare_write =
    o->delay = o->ctl = o->kill = false;
  for (char *t = strtok_r (copy, ",", &save); t;
       t = strtok_r (NULL, ",", &save)) {
    if (strcmp (t, "origin-read") == 0) o->origin_read = true;
    else if (strcmp (t, "origin-write") == 0) o->origin_write = true;
    else if (strcmp (t, "spare-read") == 0) o->spare_read = true;
    else if (strcmp (t, "spare-write") == 0) o->spare_write = true;
    else if (strcmp (t, "delay") == 0) o->delay = true;
    else if (strcmp (t, "ctl") == 0) o->ctl = true;
    else if (strcmp (t, "kill") == 0) o->kill = true;
    else if (strcmp (t, "all") == 0)
      o->origin_read = o->origin_write = o->spare_read = o->spare_write =
        o->delay = o->ctl = o->kill = true;
    else if (strcmp (t, "none") != 0) {
      fprintf (stderr, "torture: unknown class %s (use origin-read, "
               "origin-write, spare-read, spare-write, delay, ctl, kill, "
               "all, none)\n", t);
      exit (2);
    }
  }
  free (copy);
}

static void
parse (struct options *o, int argc, char **argv)
{
  *o = (struct options) { .seconds = 60, .ops = UINT64_MAX, .kills = 10,
    .threads = 4, .size_mib = 16, .hot_kib = 512, .max_faults = 6,
    .step_ms = 50 };
  parse_classes (o, "all");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL (v ? (i++, v) : (usage (), ""))
    if (strcmp (a, "--dir") == 0) o->dir = VAL;
    else if (strcmp (a, "--seed") == 0) {
      o->seed = strtoull (VAL, NULL, 0);
      o->seed_given = true;
    }
    else if (strcmp (a, "--seconds") == 0) o->seconds = atoi (VAL);
    else if (strcmp (a, "--ops") == 0) o->ops = strtoull (VAL, NULL, 0);
    else if (strcmp (a, "--kills") == 0) o->kills = atoi (VAL);
    else if (strcmp (a, "--threads") == 0) o->threads = atoi (VAL);
    else if (strcmp (a, "--size") == 0) o->size_mib = strtoull (VAL, NULL, 0);
    else if (strcmp (a, "--hot") == 0) o->hot_kib = strtoull (VAL, NULL, 0);
    else if (strcmp (a, "--max-faults") == 0) o->max_faults = atoi (VAL);
    else if (strcmp (a, "--step-ms") == 0) o->step_ms = atoi (VAL);
    else if (strcmp (a, "--external") == 0) o->external = true;
    else if (strcmp (a, "--powerloss") == 0) o->powerloss = true;
    else if (strcmp (a, "--stop-early") == 0) o->stop_early = true;
    else if (strcmp (a, "--classes") == 0) parse_classes (o, VAL);
    else if (strcmp (a, "--plant") == 0) {
      const char *p = VAL;
      o->plant = strcmp (p, "stale") == 0 ? PLANT_STALE :
        strcmp (p, "garbage") == 0 ? PLANT_GARBAGE : (usage (), PLANT_NONE);
    }
    else if (strcmp (a, "--nbdkit-arg") == 0 && o->nr_extra < MAX_EXTRA)
      o->extra[o->nr_extra++] = (char *) VAL;
    else
      usage ();
#undef VAL
  }
  if (!o->dir || o->threads < 1 || o->step_ms < 1 || o->size_mib < 4)
    usage ();
  if (!o->kill)
    o->kills = 0;
}

static uint64_t
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * UINT64_C(1000) + ts.tv_nsec / 1000000;
}

static void
sleep_ms (uint64_t ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep (&ts, NULL);
}

/* The number after "KEY": in a JSON reply, or 0. */
static uint64_t
json_u64 (const char *reply, const char *key)
{
  char pat[64];
  const char *p;

  snprintf (pat, sizeof pat, "\"%s\":", key);
  p = strstr (reply, pat);
  return p ? strtoull (p + strlen (pat), NULL, 10) : 0;
}

static void
make_file (const char *path, uint64_t size)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

  if (fd == -1 || ftruncate (fd, size) == -1 || close (fd) == -1) {
    perror (path);
    exit (2);
  }
}

/* Sends CMD about unit U (UINT64_MAX: every unit), logged in the model. */
static void
ctl_send (uint64_t u, const char *cmd, const char *note)
{
  char reply[4096];

  ctl_sent++;
  model_event (u, "control %s sent%s", cmd, note);
  if (server_ctl_cmd (cmd, reply, sizeof reply) == -1) {
    ctl_failed++;
    snprintf (reply, sizeof reply, "(no reply)");
  }
  reply[strcspn (reply, "\n")] = '\0';
  model_event (u, "control %s: %.30s", cmd, reply);
}

/* Spares run out over a run (faults retire them): with no free spare,
 * unmaps a remapped sector other than U, so that the remap of U has a
 * spare to go to.
 */
static void
free_a_spare (uint64_t u)
{
  char reply[8192], cmd[64];
  const char *sp, *p;

  if (server_ctl_cmd ("status", reply, sizeof reply) == -1 ||
      !(sp = strstr (reply, "\"spares\":")) || json_u64 (sp, "free") > 0 ||
      server_ctl_cmd ("list 0 64", reply, sizeof reply) == -1)
    return;
  for (p = reply; (p = strstr (p, "{\"sector\":")) != NULL; p++) {
    uint64_t sector = strtoull (p + strlen ("{\"sector\":"), NULL, 10);
    const char *state = strstr (p, "\"state\":\"");

    if (sector != u && state &&
        strncmp (state + strlen ("\"state\":\""), "remapped\"", 9) == 0) {
      snprintf (cmd, sizeof cmd, "unmap %" PRIu64, sector);
      ctl_send (sector, cmd, " (no spare was free)");
      return;
    }
  }
}

/* A remap of unit U racing with sub-unit writes to it.  U is unmapped
 * first, so that its writers take the fast path, which only the
 * mover's wait for writes in flight keeps from writing the origin
 * after the mover copied it.  Slowed down, a write that looked at the
 * table before the remap began is still on its way to the origin
 * while the remap copies.  Then writes stop and the unit is read
 * whole: a write lost by that copy shows before another write to its
 * piece can hide it.
 */
static void
ctl_remap_race (uint64_t *s, uint64_t u, bool delay)
{
  char cmd[64];
  uint64_t ms = delay ? 4 + rng_next (s) % 5 : 0;

  snprintf (cmd, sizeof cmd, "unmap %" PRIu64, u);
  ctl_send (u, cmd, " (before a remap racing with writes)");
  free_a_spare (u);
  if (ms)
    faults_delay_writes (ms);
  clients_focus (u, MAX_WRITERS);
  sleep_ms (ms / 2 + 1 + rng_next (s) % (ms + 2));
  snprintf (cmd, sizeof cmd, "remap %" PRIu64, u);
  ctl_send (u, cmd, " (requests focused on it)");
  clients_quiet (true);
  clients_read_unit (u);
  clients_quiet (false);
  clients_focus (UINT64_MAX, 0);
  if (ms)
    faults_delay_writes (0);
}

static void
ctl_step (uint64_t *s, uint64_t hot_units, bool delay)
{
  char cmd[64];
  uint64_t u = rng_next (s) % hot_units;
  int which = rng_next (s) % 10;

  if (which < 4) {
    model_maybe_remapped (u);
    /* Half the remaps race with writes to the same unit. */
    if (rng_next (s) % 2) {
      ctl_remap_race (s, u, delay);
      return;
    }
    snprintf (cmd, sizeof cmd, "remap %" PRIu64, u);
  }
  else if (which < 8)
    snprintf (cmd, sizeof cmd, "unmap %" PRIu64, u);
  else
    snprintf (cmd, sizeof cmd, "sync");
  ctl_send (which < 8 ? u : UINT64_MAX, cmd, "");
}

static void *
unmap_thread (void *arg)
{
  char cmd[64], reply[1024];

  snprintf (cmd, sizeof cmd, "unmap %" PRIu64, *(uint64_t *) arg);
  server_ctl_cmd (cmd, reply, sizeof reply);
  return NULL;
}

/* Kills the server at a moment chosen to hurt: clients busy on one
 * remapped unit (half their requests go there), whose spare may have
 * just become unreadable (so that its data is lost and the next write
 * moves it), with every write slowed down (in internal mode, table
 * writes too: that widens the window between a change of the table
 * in memory and its write), maybe during an unmap of it, or (power
 * cuts) a little after the writes to it stopped while flushes went
 * on; the kill lands anywhere in that.  The temporary faults are healed after the
 * restart's full read.
 */
static void
focused_kill (uint64_t *rng, uint64_t hot_units, const struct options *o,
              bool *spare_fault)
{
  uint64_t u = rng_next (rng) % hot_units;
  uint64_t ms = o->delay ? 3 + rng_next (rng) % 8 : 0;
  /* What the kill interrupts: writes to the unit, an unmap of it, or
   * (power cuts) the flushes after the writes stopped.
   */
  int what = rng_next (rng) % (o->powerloss ? 4 : 2);
  bool unmap = o->ctl && what == 1, quiet = what >= 2;
  char cmd[64], reply[1024];
  pthread_t t;

  model_maybe_remapped (u);
  snprintf (cmd, sizeof cmd, "remap %" PRIu64, u);
  ctl_sent++;
  model_event (u, "control %s sent (then a kill with requests focused on "
               "it)", cmd);
  /* Before a quiet end, one writer: a flush that claims a spare write
   * it did not sync is then not rescued by another writer's.
   */
  clients_focus (u, quiet ? 1 : MAX_WRITERS);
  if (server_ctl_cmd (cmd, reply, sizeof reply) == -1) {
    ctl_failed++;
    snprintf (reply, sizeof reply, "(no reply)");
  }
  reply[strcspn (reply, "\n")] = '\0';
  model_event (u, "control %s: %.30s", cmd, reply);
  *spare_fault = o->spare_read && rng_next (rng) % 2 &&
    faults_spares_unreadable (true);
  if (ms)
    faults_delay_writes (ms);
  sleep_ms (2 + rng_next (rng) % 20);
  if (unmap) {
    ctl_sent++;
    model_event (u, "control unmap %" PRIu64 " sent", u);
    pthread_create (&t, NULL, unmap_thread, &u);
  }
  usleep (rng_next (rng) % (3000 + ms * 6000));
  if (quiet) {
    /* Writes stop, flushes go on: a spare write that a flush claimed
     * to cover but did not sync stays unsynced now.
     */
    clients_quiet (true);
    clients_focus (UINT64_MAX, 0);
    sleep_ms (5 + rng_next (rng) % 20);
  }
  clients_server_dying ();
  model_event (UINT64_MAX, "SIGKILL of the server");
  server_kill ();
  if (unmap)
    pthread_join (t, NULL);
  clients_focus (UINT64_MAX, 0);
  if (ms)
    faults_delay_writes (0);
}

/* SIGKILL, restart, read everything back. */
static int
crash_cycle (struct server_cfg *sc, uint64_t size, uint64_t *rng,
             const struct options *o, uint64_t hot_units)
{
  bool spare_fault = false;
  int r;

  if ((o->ctl || o->delay) && rng_next (rng) % 4 < (o->powerloss ? 3 : 2)) {
    focused_kill (rng, hot_units, o, &spare_fault);
    goto killed;
  }
  clients_server_dying ();
  model_event (UINT64_MAX, "SIGKILL of the server");
  server_kill ();
 killed:
  clients_stop ();
  model_crash ();
  kills_done++;
  if (server_start (sc) == -1) {
    /* Whatever a crash leaves, the server must start on it. */
    fprintf (stderr, "VIOLATION: the server does not start after the "
             "SIGKILL; the end of its log:\n");
    server_print_log_tail (5);
    model_count_violation ();
    return -1;
  }
  r = clients_verify_all (size);
  if (spare_fault)
    faults_spares_unreadable (false);
  return r;
}

static void
report (const struct options *o, uint64_t ms, int stop_rc)
{
  struct model_stats st;
  uint64_t ops;

  model_get_stats (&st);
  ops = st.ops[OP_READ] + st.ops[OP_WRITE] + st.ops[OP_ZERO] +
    st.ops[OP_TRIM] + st.ops[OP_FLUSH];
  printf ("torture: seed %" PRIu64 ": %" PRIu64 " operations in %.1f s (%.0f "
          "ops/s), %d threads, %s mode%s\n", o->seed, ops, ms / 1000.0,
          ms ? ops * 1000.0 / ms : 0.0, o->threads,
          o->external ? "external" : "internal",
          o->powerloss ? ", power-loss cache" : "");
  printf ("torture:   reads %" PRIu64 ", writes %" PRIu64 ", zeros %" PRIu64
          ", trims %" PRIu64 ", flushes %" PRIu64 ", with FUA %" PRIu64 "\n",
          st.ops[OP_READ], st.ops[OP_WRITE], st.ops[OP_ZERO], st.ops[OP_TRIM],
          st.ops[OP_FLUSH], st.fua);
  printf ("torture:   pieces checked %" PRIu64 " (%" PRIu64 " torn by an "
          "overlapping write), failed reads %" PRIu64 ", failed writes %"
          PRIu64 ", failed flushes %" PRIu64 "\n",
          st.pieces_checked, st.pieces_torn, st.read_eio, st.write_errors,
          st.flush_errors);
  printf ("torture:   faults injected %" PRIu64 ", control commands %" PRIu64
          " (%" PRIu64 " unanswered), kills %" PRIu64 ", final SIGTERM exit "
          "status %d\n", faults_injected (), ctl_sent, ctl_failed, kills_done,
          stop_rc);
  printf ("torture:   violations %" PRIu64 "\n", st.violations);
}

/* Killed by timeout(1) or ^C: take the server along. */
static void
on_signal (int sig)
{
  server_kill_from_signal ();
  signal (sig, SIG_DFL);
  raise (sig);
}

int
main (int argc, char **argv)
{
  struct options o;
  struct server_cfg sc = { 0 };
  struct fault_cfg fc = { 0 };
  struct client_cfg cc = { 0 };
  struct model_stats st;
  char disk[512], list[512], spare[512], reply[8192];
  uint64_t rng, start, deadline, next_kill, kill_every, next_prune, size;
  int cycle = 0, rc, stop_rc;

  parse (&o, argc, argv);
  if (!o.seed_given)
    o.seed = (uint64_t) time (NULL) * 1000003 ^ getpid ();
  printf ("torture: seed %" PRIu64 " (replay with --seed %" PRIu64 ")\n",
          o.seed, o.seed);
  fflush (stdout);
  signal (SIGPIPE, SIG_IGN);
  signal (SIGTERM, on_signal);
  signal (SIGINT, on_signal);
  signal (SIGHUP, on_signal);
  rng = o.seed * 2 + 1;
  rng_next (&rng);
  model_plant (o.plant);

  snprintf (disk, sizeof disk, "%s/disk.img", o.dir);
  snprintf (list, sizeof list, "%s/bad.txt", o.dir);
  snprintf (spare, sizeof spare, "%s/spare.img", o.dir);
  make_file (disk, o.size_mib << 20);
  make_file (list, 0);
  sc = (struct server_cfg) { .dir = o.dir, .disk = disk, .list = list,
    .spare = o.external ? spare : NULL, .powerloss = o.powerloss,
    .extra = o.extra, .nr_extra = o.nr_extra };
  if (server_start (&sc) == -1)
    return 2;
  if (server_ctl_cmd ("status", reply, sizeof reply) == -1 ||
      !(size = json_u64 (reply, "export_size"))) {
    fprintf (stderr, "torture: no status from the control socket\n");
    server_kill ();
    return 2;
  }
  size -= size % UNIT;
  model_init (size);
  fc = (struct fault_cfg) { .list = list, .export_units = size / UNIT,
    .hot_units = (o.hot_kib << 10) / UNIT, .max_active = o.max_faults,
    .origin_read = o.origin_read, .origin_write = o.origin_write,
    .spare_read = o.spare_read, .spare_write = o.spare_write,
    .delay = o.delay };
  if (fc.hot_units < 2 || fc.hot_units > fc.export_units)
    fc.hot_units = fc.export_units;
  if (strstr (reply, "\"mode\":\"internal\"")) {
    const char *sp = strstr (reply, "\"spares\":");
    fc.spare_first = json_u64 (reply, "spare_offset") / UNIT;
    fc.spare_count = sp ? json_u64 (sp, "total") : 0;
  }
  faults_init (&fc);
  cc = (struct client_cfg) { .threads = o.threads, .size = size,
    .hot = fc.hot_units * UNIT };

  start = now_ms ();
  deadline = start + o.seconds * UINT64_C(1000);
  kill_every = o.kills ? o.seconds * UINT64_C(1000) / (o.kills + 1) :
    UINT64_MAX;
  next_kill = o.kills ? start + kill_every : UINT64_MAX;
  next_prune = start + PRUNE_EVERY_MS;
  clients_start (&cc, o.seed + cycle++);

  while (now_ms () < deadline && clients_ops () < o.ops) {
    sleep_ms (rng_next (&rng) % (2 * o.step_ms));
    if (o.ctl && rng_next (&rng) % 4 == 0)
      ctl_step (&rng, fc.hot_units, o.delay);
    else
      faults_step (&rng);
    if (kills_done < (uint64_t) o.kills && now_ms () >= next_kill) {
      if (crash_cycle (&sc, size, &rng, &o, fc.hot_units) == -1) {
        report (&o, now_ms () - start, -1);
        model_get_stats (&st);
        return st.violations ? 1 : 2;
      }
      next_kill += kill_every;
      model_prune ();
      clients_start (&cc, o.seed + cycle++);
    }
    else if (now_ms () >= next_prune) {
      clients_stop ();
      model_prune ();
      clients_start (&cc, o.seed + cycle++);
      next_prune = now_ms () + PRUNE_EVERY_MS;
    }
    model_get_stats (&st);
    if ((o.plant != PLANT_NONE && model_planted ()) ||
        (o.stop_early && st.violations))
      break;
  }
  clients_stop ();

  /* The end: a clean stop, a last start, a last full read. */
  stop_rc = server_stop ();
  model_crash ();
  if (server_start (&sc) == -1) {
    fprintf (stderr, "VIOLATION: the server does not start after its "
             "SIGTERM; the end of its log:\n");
    server_print_log_tail (5);
    model_count_violation ();
    report (&o, now_ms () - start, stop_rc);
    return 1;
  }
  if (clients_verify_all (size) == -1) {
    server_kill ();
    report (&o, now_ms () - start, stop_rc);
    return 2;
  }
  server_stop ();
  report (&o, now_ms () - start, stop_rc);
  model_get_stats (&st);
  rc = st.violations || stop_rc != 0 ? 1 : 0;
  if (o.plant != PLANT_NONE && !model_planted ()) {
    printf ("torture: the self-test found nothing to plant\n");
    rc = 2;
  }
  return rc;
}
