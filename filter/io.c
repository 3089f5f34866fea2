/* nbdkit-remap: helpers over struct remap_io (see io.h). */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "errseq.h"
#include "io.h"

int
remap_io_pread_all (const struct remap_io *io, void *buf, uint64_t count,
                    uint64_t offset, int *err)
{
  unsigned char *p = buf;

  while (count > 0) {
    uint32_t n = count > REMAP_IO_MAX ? REMAP_IO_MAX : count;
    if (io->pread (io->opaque, p, n, offset, 0, err) == -1)
      return -1;
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

int
remap_io_pwrite_all (const struct remap_io *io, const void *buf,
                     uint64_t count, uint64_t offset, int *err)
{
  const unsigned char *p = buf;

  while (count > 0) {
    uint32_t n = count > REMAP_IO_MAX ? REMAP_IO_MAX : count;
    if (io->pwrite (io->opaque, p, n, offset, 0, err) == -1)
      return -1;
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

int
remap_io_flush (const struct remap_io *io, int *err)
{
  return io->flush ? io->flush (io->opaque, err) : 0;
}

int
remap_io_flush_reported (const struct remap_io *io, int *err)
{
  if (io->errseq)
    return remap_errseq_flush (io->errseq, true, err);
  return remap_io_flush (io, err);
}

static bool
all_zero (const unsigned char *p, size_t n)
{
  return n == 0 || (p[0] == 0 && memcmp (p, p + 1, n - 1) == 0);
}

int
remap_io_is_zero (const struct remap_io *io, uint64_t count,
                  uint64_t offset, bool *is_zero, int *err)
{
  const uint32_t chunk = 1024 * 1024;
  CLEANUP_FREE unsigned char *buf = malloc (chunk);

  if (buf == NULL) {
    *err = ENOMEM;
    return -1;
  }
  *is_zero = true;
  while (count > 0) {
    /* Ask about as much as possible at once, but read at most a chunk. */
    uint32_t ask = count > INT32_MAX ? INT32_MAX : count;
    uint64_t run = ask;
    bool zero = false;

    if (io->extent &&
        io->extent (io->opaque, ask, offset, &run, &zero, err) == -1)
      return -1;
    if (run == 0 || run > ask)
      run = ask;
    if (!zero) {
      if (run > chunk)
        run = chunk;
      if (io->pread (io->opaque, buf, run, offset, 0, err) == -1)
        return -1;
      if (!all_zero (buf, run)) {
        *is_zero = false;
        return 0;
      }
    }
    offset += run;
    count -= run;
  }
  return 0;
}
