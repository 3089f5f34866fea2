/* nbdkit-remap torture test: what its parts share.
 *
 * The test (see torture.c for the whole story) runs client threads
 * against nbdkit --filter=remap --filter=badsector file DISK while a
 * controller changes faults, talks to the control socket and SIGKILLs
 * the server.  Every operation is recorded in the reference model
 * (model.c), which checks every byte a read returns.
 *
 * Time is a global logical clock (torture_tick): every operation
 * takes a tick before it is sent and another after its reply, and
 * every fault change takes one, so "before" and "after" in the model
 * are comparisons of ticks.
 */
#ifndef TORTURE_H
#define TORTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PIECE 512               /* granularity of the model */
#define UNIT 4096               /* remap and badsector sector size */
#define PIECES_PER_UNIT (UNIT / PIECE)
#define TICK_NEVER UINT64_MAX

uint64_t torture_tick (void);

/* ---- The model (model.c). ---- */

enum op_kind { OP_READ, OP_WRITE, OP_ZERO, OP_TRIM, OP_FLUSH };

/* Initialise for an export of SIZE bytes (a multiple of UNIT). */
void model_init (uint64_t size);

/* A write, zero or trim: begin records it as in flight on every piece
 * it covers and returns its id; end records its outcome.
 */
uint64_t model_write_begin (enum op_kind kind, uint64_t off, uint32_t len,
                            bool fua, int client);
void model_write_end (uint64_t id, int err);

/* Fills BUF with the contents of write ID (PIECE-aligned). */
void model_fill (uint64_t id, uint64_t off, uint32_t len, char *buf);

/* A read that started at tick START and returned at END, with BUF or
 * error ERR (an errno, 0 for success).  Returns the number of
 * violations found (each printed to stderr).
 */
uint64_t model_read_check (uint64_t off, uint32_t len, uint64_t start,
                           uint64_t end, const char *buf, int err,
                           int client);

/* A flush that started at START and succeeded covers every write
 * acknowledged before START.
 */
void model_flush_ok (uint64_t start);

/* A write or flush that failed: returns violations (a failure with no
 * fault that could explain it).
 */
uint64_t model_write_error_check (uint64_t off, uint32_t len, int err,
                                  uint64_t id);

/* Faults, in units of UNIT.  READ says whether the fault fails reads
 * (then reads of the unit may fail until a whole-unit write after it
 * heals); any fault makes the unit a candidate for a spare.
 */
void model_origin_fault (uint64_t unit, bool read, bool on);
void model_spare_read_fault (bool on);
void model_maybe_remapped (uint64_t unit);

/* Logs an event for the histories of violations: a fault, a control
 * command, a kill (UNIT UINT64_MAX: concerns every unit).
 */
void model_event (uint64_t unit, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* The server was killed: only flushed data, and anything newer, may
 * be found after the restart.
 */
void model_crash (void);
/* After the restart's full read: the state that was found becomes the
 * only one (per piece; EIO leaves the candidates).
 */
void model_settle (uint64_t off, uint32_t len, const char *buf, int err);
/* With no operation in flight: forget versions no read can return. */
void model_prune (void);

/* Self-test: make the next successful read at or after op count N
 * look as if it returned a stale or garbage piece.
 */
enum plant { PLANT_NONE, PLANT_STALE, PLANT_GARBAGE };
void model_plant (enum plant what);
bool model_planted (void);

struct model_stats {
  uint64_t ops[OP_FLUSH + 1];
  uint64_t fua, read_eio, write_errors, flush_errors, violations;
  uint64_t pieces_checked;
  uint64_t pieces_torn;         /* mixed by an overlapping write: legal */
};
void model_get_stats (struct model_stats *st);
void model_count_flush_error (void);
/* A violation found outside the model (the server would not restart):
 * counts it and prints the last events.
 */
void model_count_violation (void);

/* ---- The server (server.c). ---- */

struct server_cfg {
  const char *dir;              /* socket, pid file, log here */
  const char *disk, *list, *spare; /* spare: NULL for internal mode */
  bool powerloss;               /* cache=writeback under badsector */
  char **extra;                 /* extra nbdkit arguments (-D ...) */
  int nr_extra;
  int generation;               /* restarts so far, for log names */
};
int server_start (struct server_cfg *cfg);
/* Prints the last lines of the log of the last server started. */
void server_print_log_tail (int lines);
void server_kill (void);        /* SIGKILL and reap */
void server_kill_from_signal (void); /* SIGKILL only: async-signal-safe */
int server_stop (void);         /* SIGTERM, bounded wait */
const char *server_socket (void);
const char *server_ctl (void);
/* Sends one control-socket command, puts the reply (one line) in
 * REPLY; returns 0 or -1.
 */
int server_ctl_cmd (const char *cmd, char *reply, size_t len);

/* ---- The clients (client.c). ---- */

struct client_cfg {
  int threads;
  uint64_t size;                /* export size */
  uint64_t hot;                 /* most ops go to [0, hot) */
};
/* Starts the threads; they run until client_stop. */
void clients_start (struct client_cfg *cfg, uint64_t seed);
/* Clients 0 to WRITERS-1 send half their requests to UNIT, the
 * others flush more often (UNIT UINT64_MAX: back to normal).
 */
void clients_focus (uint64_t unit, int writers);
/* No writes while ON: only reads and flushes.  Turning it on returns
 * once no write is in flight (or after two seconds).
 */
void clients_quiet (bool on);
/* One read of UNIT on a connection of its own, checked. */
void clients_read_unit (uint64_t unit);
/* Tells them the server is about to die: errors are then expected. */
void clients_server_dying (void);
void clients_stop (void);
uint64_t clients_ops (void);
/* One connection's full read of the export, checked and settled. */
int clients_verify_all (uint64_t size);

/* ---- Faults (faults.c). ---- */

struct fault_cfg {
  const char *list;
  uint64_t export_units, hot_units;
  uint64_t spare_first, spare_count; /* spare_count 0: none to fault */
  int max_active;
  /* Which classes of fault to inject. */
  bool origin_read, origin_write, spare_read, spare_write, delay;
};
void faults_init (struct fault_cfg *cfg);
void faults_step (uint64_t *rng);   /* add or heal one */
void faults_clear (void);
/* Makes the whole spare area fail reads, or heals that; false if
 * there is no spare area to fault (external mode).
 */
bool faults_spares_unreadable (bool on);
/* Sets the delay of every write (0: none), replacing any. */
void faults_delay_writes (uint64_t ms);
uint64_t faults_injected (void);

uint64_t rng_next (uint64_t *s);

#endif /* TORTURE_H */
