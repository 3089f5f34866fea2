/* nbdkit-remap: writeback errors of one shared descriptor or plugin
 * context, and who is owed them (see errseq.c).
 */
#ifndef REMAP_ERRSEQ_H
#define REMAP_ERRSEQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* What is known of the writeback errors of one descriptor (a plugin
 * context, the spare file) shared by several parties.  Its owner's
 * writes call remap_errseq_write_begin/end, and every flush goes
 * through remap_errseq_flush.
 */
struct remap_errseq {
  /* The flush itself, without any bookkeeping. */
  int (*flush) (void *opaque, int *err);
  void *opaque;
  /* Errors may be reported late, at a flush or FUA write (a cache
   * below us).  If false, nothing is tracked.
   */
  bool delayed;
  /* One flush at a time, so that a flush that hears of an error
   * before or during another is counted before that one decides.
   */
  pthread_mutex_t flush_lock;
  /* All atomic. */
  uint64_t started;             /* writes without FUA begun */
  uint64_t finished;            /* ... and ended, well or not */
  uint64_t durable;             /* 'finished' when the last good flush began */
  uint64_t errors;              /* EIOs of FUA writes and flushes: the
                                   error sequence */
  bool owed;                    /* the next reporting flush fails */
};

extern void remap_errseq_init (struct remap_errseq *es,
                               int (*flush) (void *opaque, int *err),
                               void *opaque, bool delayed);

/* Around every write (and zero) of the descriptor.  begin returns what
 * end needs.  end may turn a good FUA write into EIO: an error reached
 * another request while it ran, and may have been this write's.
 */
extern uint64_t remap_errseq_write_begin (struct remap_errseq *es,
                                          uint32_t flags);
extern int remap_errseq_write_end (struct remap_errseq *es, int r,
                                   uint32_t flags, int *err,
                                   uint64_t at_start);

/* A FUA write made as a write without FUA (r: how it went) and a
 * flush of the filter's own, for a descriptor that has no FUA: it
 * fails if another request heard a writeback error between at_start
 * (from remap_errseq_write_begin with REMAP_FLAG_FUA) and the end of
 * the flush, because the error may have been this write's.
 */
extern int remap_errseq_fua_by_flush (struct remap_errseq *es, int r,
                                      int *err, uint64_t at_start);

/* Flushes.  report: the caller tells the result to the parties whose
 * writes the flush covers (a client's flush), so it also fails for an
 * error another party heard while those writes were not flushed.
 * Without report (the filter's own flushes: a table write, a FUA
 * emulated by a flush) an EIO is owed to the next reporting flush.
 */
extern int remap_errseq_flush (struct remap_errseq *es, bool report,
                               int *err);

/* The error sequence: a party that needs its writes durable reads it
 * before them and treats its flush as failed if it moved.  0 if es is
 * NULL.
 */
extern uint64_t remap_errseq_errors (const struct remap_errseq *es);
/* An error is owed: a reporting flush must run even with nothing new
 * to flush.
 */
extern bool remap_errseq_owed (const struct remap_errseq *es);

#endif /* REMAP_ERRSEQ_H */
