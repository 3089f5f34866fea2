/* nbdkit-remap unit tests: a disk in memory (see memdisk.h). */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memdisk.h"

static bool
touches (const uint64_t *list, unsigned n, uint32_t unit,
         uint64_t offset, uint32_t count)
{
  for (unsigned i = 0; i < n; i++) {
    uint64_t start = list[i] * unit, end = start + unit;
    if (offset < end && offset + count > start)
      return true;
  }
  return false;
}

static int
md_pread (void *opaque, void *buf, uint32_t count, uint64_t offset,
          uint32_t flags, int *err)
{
  struct memdisk *d = opaque;
  int r = 0;

  (void) flags;
  pthread_mutex_lock (&d->lock);
  d->preads++;
  if (offset + count > d->size) {
    *err = EINVAL;
    r = -1;
  }
  else if (touches (d->bad_read, d->nr_bad_read, d->bad_unit, offset, count)) {
    *err = EIO;
    r = -1;
  }
  else
    memcpy (buf, d->data + offset, count);
  pthread_mutex_unlock (&d->lock);
  return r;
}

static void
write_delay (struct memdisk *d)
{
  uint32_t us = __atomic_load_n (&d->write_delay_us, __ATOMIC_RELAXED);

  if (us) {
    struct timespec ts = { .tv_sec = us / 1000000,
                           .tv_nsec = us % 1000000 * 1000 };
    nanosleep (&ts, NULL);
  }
}

/* Whether a write of [offset, offset+count) may go ahead; sets *err if
 * not.  Caller holds the lock.
 */
static bool
write_allowed (struct memdisk *d, uint32_t count, uint64_t offset, int *err)
{
  if (offset + count > d->size) {
    *err = EINVAL;
    return false;
  }
  if (d->fail_all_writes || d->writes_left == 0 ||
      touches (d->bad_write, d->nr_bad_write, d->bad_unit, offset, count)) {
    *err = EIO;
    return false;
  }
  if (d->writes_left > 0)
    d->writes_left--;
  return true;
}

struct memdisk_undo {
  uint64_t offset;
  uint32_t count;
  unsigned char *old;
};

/* A write to a bad_writeback unit is about to change [offset,
 * offset+count): keeps what it overwrites.  Caller holds the lock.
 */
static void
keep_for_undo (struct memdisk *d, uint32_t count, uint64_t offset)
{
  struct memdisk_undo *u;

  if (!touches (d->bad_writeback, d->nr_bad_writeback, d->bad_unit,
                offset, count))
    return;
  u = realloc (d->undo, (d->nr_undo + 1) * sizeof *u);
  if (u == NULL)
    abort ();
  d->undo = u;
  u = &d->undo[d->nr_undo++];
  u->offset = offset;
  u->count = count;
  u->old = malloc (count);
  if (u->old == NULL)
    abort ();
  memcpy (u->old, d->data + offset, count);
}

/* The writeback of kept writes fails: their data is gone.  True if
 * there were any.  Caller holds the lock.
 */
static bool
drop_kept (struct memdisk *d)
{
  if (d->nr_undo == 0)
    return false;
  while (d->nr_undo > 0) {
    struct memdisk_undo *u = &d->undo[--d->nr_undo];
    memcpy (d->data + u->offset, u->old, u->count);
    free (u->old);
  }
  d->nr_bad_writeback = 0;
  return true;
}

/* The end of a write: a FUA write (if the test set io.can_fua) is the
 * write and a flush, as on a spare file (filestore.c).
 */
static int
md_write_end (struct memdisk *d, int r, uint32_t flags, int *err,
              uint64_t at_start)
{
  if (!(flags & REMAP_FLAG_FUA))
    return remap_errseq_write_end (&d->errseq, r, flags, err, at_start);
  if (r == 0 && d->before_flush)
    d->before_flush (d, d->before_flush_opaque);
  return remap_errseq_fua_by_flush (&d->errseq, r, err, at_start);
}

static int
md_pwrite (void *opaque, const void *buf, uint32_t count, uint64_t offset,
           uint32_t flags, int *err)
{
  struct memdisk *d = opaque;
  uint64_t at_start = remap_errseq_write_begin (&d->errseq, flags);
  int r = 0;

  write_delay (d);
  pthread_mutex_lock (&d->lock);
  d->pwrites++;
  if (write_allowed (d, count, offset, err)) {
    keep_for_undo (d, count, offset);
    memcpy (d->data + offset, buf, count);
  }
  else {
    if (d->writes_left == 0 && d->torn_bytes && offset + count <= d->size &&
        !touches (d->bad_write, d->nr_bad_write, d->bad_unit, offset, count)) {
      memcpy (d->data + offset, buf,
              d->torn_bytes < count ? d->torn_bytes : count);
      d->torn_bytes = 0;
    }
    r = -1;
  }
  pthread_mutex_unlock (&d->lock);
  return md_write_end (d, r, flags, err, at_start);
}

static int
md_zero (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
         int *err)
{
  struct memdisk *d = opaque;
  uint64_t at_start = remap_errseq_write_begin (&d->errseq, flags);
  int r = 0;

  write_delay (d);
  pthread_mutex_lock (&d->lock);
  d->zeroes++;
  d->last_zero_offset = offset;
  d->last_zero_count = count;
  if (write_allowed (d, count, offset, err)) {
    keep_for_undo (d, count, offset);
    memset (d->data + offset, 0, count);
  }
  else
    r = -1;
  pthread_mutex_unlock (&d->lock);
  return md_write_end (d, r, flags, err, at_start);
}

static int
md_trim (void *opaque, uint32_t count, uint64_t offset, uint32_t flags,
         int *err)
{
  struct memdisk *d = opaque;
  int r = 0;

  (void) flags;
  pthread_mutex_lock (&d->lock);
  d->trims++;
  d->last_trim_offset = offset;
  d->last_trim_count = count;
  if (offset + count > d->size) {
    *err = EINVAL;
    r = -1;
  }
  else
    memset (d->data + offset, 0, count);
  pthread_mutex_unlock (&d->lock);
  return r;
}

static int
md_flush (void *opaque, int *err)
{
  struct memdisk *d = opaque;

  int r = 0;

  pthread_mutex_lock (&d->lock);
  d->flushes++;
  pthread_cond_broadcast (&d->flush_cond);
  while (d->flush_hold)
    pthread_cond_wait (&d->flush_cond, &d->lock);
  d->flushes_done++;
  if (drop_kept (d) || d->flush_fail) {
    *err = EIO;
    r = -1;
  }
  pthread_mutex_unlock (&d->lock);
  return r;
}

/* The flush the filter sees: a store's own (errseq.h). */
static int
md_flush_own (void *opaque, int *err)
{
  struct memdisk *d = opaque;

  if (d->before_flush)
    d->before_flush (d, d->before_flush_opaque);
  return remap_errseq_flush (&d->errseq, false, err);
}

void
memdisk_wait_flushes (struct memdisk *d, unsigned n)
{
  pthread_mutex_lock (&d->lock);
  while (d->flushes < n)
    pthread_cond_wait (&d->flush_cond, &d->lock);
  pthread_mutex_unlock (&d->lock);
}

void
memdisk_release_flushes (struct memdisk *d)
{
  pthread_mutex_lock (&d->lock);
  d->flush_hold = false;
  pthread_cond_broadcast (&d->flush_cond);
  pthread_mutex_unlock (&d->lock);
}

/* Like a sparse file: a 4 KiB block of zeros is a hole. */
#define MD_BLOCK 4096

static bool
md_block_zero (const struct memdisk *d, uint64_t block)
{
  uint64_t start = block * MD_BLOCK;
  uint64_t end = start + MD_BLOCK < d->size ? start + MD_BLOCK : d->size;

  for (uint64_t i = start; i < end; i++)
    if (d->data[i])
      return false;
  return true;
}

static int
md_extent (void *opaque, uint32_t count, uint64_t offset, uint64_t *run,
           bool *zero, int *err)
{
  struct memdisk *d = opaque;
  uint64_t block = offset / MD_BLOCK, end = offset + count;

  (void) err;
  pthread_mutex_lock (&d->lock);
  *zero = md_block_zero (d, block);
  while ((block + 1) * MD_BLOCK < end &&
         md_block_zero (d, block + 1) == *zero)
    block++;
  pthread_mutex_unlock (&d->lock);
  *run = (block + 1) * MD_BLOCK < end ? (block + 1) * MD_BLOCK - offset
    : count;
  return 0;
}

struct memdisk *
memdisk_new (uint64_t size, uint32_t bad_unit)
{
  struct memdisk *d = calloc (1, sizeof *d);

  if (d == NULL)
    return NULL;
  d->data = calloc (1, size);
  if (d->data == NULL) {
    free (d);
    return NULL;
  }
  d->size = size;
  d->bad_unit = bad_unit;
  d->writes_left = -1;
  pthread_mutex_init (&d->lock, NULL);
  pthread_cond_init (&d->flush_cond, NULL);
  remap_errseq_init (&d->errseq, md_flush, d, true);
  d->io = (struct remap_io) {
    .opaque = d,
    .pread = md_pread,
    .pwrite = md_pwrite,
    .zero = md_zero,
    .trim = md_trim,
    .flush = md_flush_own,
    .extent = md_extent,
    .errseq = &d->errseq,
  };
  return d;
}

void
memdisk_free (struct memdisk *d)
{
  if (d) {
    while (d->nr_undo > 0)
      free (d->undo[--d->nr_undo].old);
    free (d->undo);
    pthread_cond_destroy (&d->flush_cond);
    pthread_mutex_destroy (&d->lock);
    free (d->data);
    free (d);
  }
}

void
memdisk_fail_write (struct memdisk *d, uint64_t unit)
{
  pthread_mutex_lock (&d->lock);
  if (d->nr_bad_write < MEMDISK_MAX_BAD)
    d->bad_write[d->nr_bad_write++] = unit;
  pthread_mutex_unlock (&d->lock);
}

void
memdisk_fail_read (struct memdisk *d, uint64_t unit)
{
  pthread_mutex_lock (&d->lock);
  if (d->nr_bad_read < MEMDISK_MAX_BAD)
    d->bad_read[d->nr_bad_read++] = unit;
  pthread_mutex_unlock (&d->lock);
}

void
memdisk_fail_writeback (struct memdisk *d, uint64_t unit)
{
  pthread_mutex_lock (&d->lock);
  if (d->nr_bad_writeback < MEMDISK_MAX_BAD)
    d->bad_writeback[d->nr_bad_writeback++] = unit;
  pthread_mutex_unlock (&d->lock);
}

void
memdisk_fail_after_writes (struct memdisk *d, int64_t n)
{
  pthread_mutex_lock (&d->lock);
  d->writes_left = n;
  pthread_mutex_unlock (&d->lock);
}

void
memdisk_heal (struct memdisk *d)
{
  pthread_mutex_lock (&d->lock);
  d->nr_bad_write = d->nr_bad_read = d->nr_bad_writeback = 0;
  d->fail_all_writes = false;
  d->writes_left = -1;
  pthread_mutex_unlock (&d->lock);
}
