/* nbdkit-remap: writeback errors of a shared descriptor (errseq.h).
 *
 * Below a page cache, a media error of a write is reported by the next
 * flush or FUA write, and Linux tells each open file description once
 * (its errseq).  So when several parties share one descriptor or one
 * plugin context, the EIO that one party's flush or FUA write gets may
 * belong to another party's write, whose data is gone, and that
 * party's own later flush then succeeds.  The parties here: a
 * client's connection context (its writes without FUA, its FUA writes,
 * its flushes); the store (the spare file, or the filter's shared
 * plugin context in internal mode), shared by the clients' spare
 * writes and their flush rounds (datapath.c) and by the sync thread's
 * table writes and flushes (metadata.c).
 *
 * Rules:
 *  - Every EIO of a FUA write or a flush bumps 'errors', the error
 *    sequence.  A party that needs its own writes durable (the table
 *    write) reads it before them and, if it moved by the end, treats
 *    its writes as lost and writes them again.
 *  - A write without FUA is covered by a good flush that began after
 *    it ended ('durable').  An EIO heard while such a write is not
 *    covered may have been that write's: if whoever heard it does not
 *    tell the writers (a FUA write, whose data path retries and may
 *    succeed; a flush of the filter's own), it is owed, and the next
 *    reporting flush fails, once.  A reporting flush that fails pays
 *    the debt.  A FUA write's retry that fails again does not pay it:
 *    one writeback error covers every page that failed, so the FUA
 *    write's own bad sector does not show the other writes were
 *    spared.  Errors heard while every write was covered are owed to
 *    no one, so one error never makes every later flush fail.
 *  - A reporting flush also fails when another request heard an EIO
 *    while it ran and it covers a write not covered before.
 *  - A FUA write under way when another request hears an EIO may have
 *    lost its data to it (its own writeback then finds nothing left to
 *    write and succeeds), so it reports EIO, and the data path writes
 *    it again sector by sector from the client's buffer (on the store,
 *    to another spare).  So does a FUA write made of a write and a
 *    flush (the spare file), if the error came before its flush ended.
 * With every write carrying FUA nothing is ever owed; where errors are
 * not delayed (remap-plugin-cache=no) none of this applies.
 * Counting costs two atomic additions per write without FUA, and two
 * loads per FUA write.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include <nbdkit-filter.h>

#include "errseq.h"
#include "io.h"

void
remap_errseq_init (struct remap_errseq *es,
                   int (*flush) (void *opaque, int *err), void *opaque,
                   bool delayed)
{
  *es = (struct remap_errseq) { .flush = flush, .opaque = opaque,
                                .delayed = delayed,
                                .flush_lock = PTHREAD_MUTEX_INITIALIZER };
}

/* An EIO reached someone who does not tell the writers: owed if a
 * write may have lost its data to it.
 */
static void
heard_error (struct remap_errseq *es, bool report)
{
  __atomic_add_fetch (&es->errors, 1, __ATOMIC_SEQ_CST);
  if (report)
    __atomic_store_n (&es->owed, false, __ATOMIC_SEQ_CST);
  else if (__atomic_load_n (&es->started, __ATOMIC_SEQ_CST) !=
           __atomic_load_n (&es->durable, __ATOMIC_SEQ_CST) &&
           !__atomic_exchange_n (&es->owed, true, __ATOMIC_SEQ_CST))
    nbdkit_debug ("remap: a writeback error was heard while other writes "
                  "were not flushed: the error may have been theirs, so "
                  "the next flush reports it");
}

uint64_t
remap_errseq_write_begin (struct remap_errseq *es, uint32_t flags)
{
  if (!(flags & REMAP_FLAG_FUA)) {
    __atomic_add_fetch (&es->started, 1, __ATOMIC_SEQ_CST);
    return 0;
  }
  return __atomic_load_n (&es->errors, __ATOMIC_SEQ_CST);
}

int
remap_errseq_write_end (struct remap_errseq *es, int r, uint32_t flags,
                        int *err, uint64_t at_start)
{
  if (!(flags & REMAP_FLAG_FUA)) {
    __atomic_add_fetch (&es->finished, 1, __ATOMIC_SEQ_CST);
    return r;
  }
  if (!es->delayed)
    return r;
  if (r == -1 && *err == EIO)
    heard_error (es, false);
  else if (r == 0 &&
           __atomic_load_n (&es->errors, __ATOMIC_SEQ_CST) != at_start) {
    nbdkit_debug ("remap: a writeback error reached another request "
                  "during a FUA write: that write is tried again");
    *err = EIO;
    return -1;
  }
  return r;
}

int
remap_errseq_fua_by_flush (struct remap_errseq *es, int r, int *err,
                           uint64_t at_start)
{
  if (r == 0)
    r = remap_errseq_flush (es, false, err);
  return remap_errseq_write_end (es, r, REMAP_FLAG_FUA, err, at_start);
}

int
remap_errseq_flush (struct remap_errseq *es, bool report, int *err)
{
  uint64_t finished = __atomic_load_n (&es->finished, __ATOMIC_SEQ_CST);
  uint64_t errors = __atomic_load_n (&es->errors, __ATOMIC_SEQ_CST);
  uint64_t durable = __atomic_load_n (&es->durable, __ATOMIC_SEQ_CST);
  const bool uncovered = durable < finished;
  int r;

  pthread_mutex_lock (&es->flush_lock);
  r = es->flush (es->opaque, err);
  if (r == -1) {
    if (*err == EIO && es->delayed)
      heard_error (es, report);
    pthread_mutex_unlock (&es->flush_lock);
    return -1;
  }
  pthread_mutex_unlock (&es->flush_lock);
  if (!es->delayed)
    return 0;
  if (uncovered &&
      __atomic_load_n (&es->errors, __ATOMIC_SEQ_CST) != errors) {
    /* Not covered then: whoever heard it owes it, or told it. */
    if (!report)
      return 0;
    nbdkit_error ("remap: an earlier write may have been lost: a "
                  "writeback error reached a request that ran during "
                  "this flush");
    *err = EIO;
    return -1;
  }
  durable = __atomic_load_n (&es->durable, __ATOMIC_SEQ_CST);
  while (durable < finished &&
         !__atomic_compare_exchange_n (&es->durable, &durable, finished,
                                       false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST))
    ;
  if (report && __atomic_exchange_n (&es->owed, false, __ATOMIC_SEQ_CST)) {
    nbdkit_error ("remap: an earlier write may have been lost: a "
                  "writeback error was reported to another request "
                  "(a FUA write, or a flush of the filter's own)");
    *err = EIO;
    return -1;
  }
  return 0;
}

uint64_t
remap_errseq_errors (const struct remap_errseq *es)
{
  return es ? __atomic_load_n (&es->errors, __ATOMIC_SEQ_CST) : 0;
}

bool
remap_errseq_owed (const struct remap_errseq *es)
{
  return es && __atomic_load_n (&es->owed, __ATOMIC_SEQ_CST);
}
