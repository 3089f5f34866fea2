/* nbdkit-remap: deciding whether a store without remap metadata may be
 * formatted, and naming what is on it when not (see probe.h).
 *
 * Why extents and not reads: the last 1% of a disk that holds a
 * filesystem is usually free blocks, which read as zeros, so "the
 * region reads as zeros" says nothing about the rest of the disk (the
 * filesystem still believes it owns that end).  Only a disk that is
 * blank as a whole is safe to shrink, and only extents tell that
 * without reading the whole disk.  A plugin that reports no extents
 * (a block device under the file plugin, most remote plugins) cannot
 * prove it, so such a disk needs remap-format=yes.
 *
 * The diagnosis of a disk that is not blank reads a bounded amount:
 * the first and last MiB for libblkid (copied into a sparse memfd of
 * the disk's size, since libblkid probes only descriptors), the last
 * 64 MiB for a header that a shrink left behind, and the last MiB
 * below the ends of the plugin's last few runs of data extents, which
 * is where header B of a region sits after the disk was grown.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <blkid.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "probe.h"

#define MIB (1024 * 1024)
/* How far from the end of the disk to look for a header after a
 * shrink, and how many extents to walk to find the end of the data.
 */
#define STRAY_SCAN_BYTES (64 * MIB)
#define MAX_EXTENT_CALLS 100000
/* Extent requests are 32-bit; ask in large aligned steps. */
#define EXTENT_ASK (UINT32_C (1) << 31)

int
remap_probe_blank (const struct remap_io *store, uint64_t size, bool *blank,
                   bool *known, int *err)
{
  uint64_t offset = 0;

  *blank = false;
  *known = store->extent != NULL;
  if (!*known)
    return 0;
  while (offset < size) {
    uint64_t ask = size - offset < EXTENT_ASK ? size - offset : EXTENT_ASK;
    uint64_t run;
    bool zero;

    if (store->extent (store->opaque, ask, offset, &run, &zero, err) == -1)
      return -1;
    if (!zero)
      return 0;
    if (run == 0 || run > ask)
      run = ask;
    offset += run;
  }
  *blank = true;
  return 0;
}

/* The ends of the plugin's last (up to MAX_DATA_ENDS) runs of extents
 * that may hold data, highest first; the count, 0 if the plugin has
 * no extents or the walk would take too many calls.  The region of a
 * disk that was grown ends such a run: header B is its last slot.
 * (A move-region cut short leaves a later run, at the new end.)
 */
#define MAX_DATA_ENDS 8

static unsigned
last_data_ends (const struct remap_io *store, uint64_t size,
                uint64_t ends[MAX_DATA_ENDS])
{
  uint64_t offset = 0, ring[MAX_DATA_ENDS];
  unsigned n = 0;
  bool in_data = false;
  int err;

  if (store->extent == NULL)
    return 0;
  for (unsigned calls = 0; offset < size; calls++) {
    uint64_t ask = size - offset < EXTENT_ASK ? size - offset : EXTENT_ASK;
    uint64_t run;
    bool zero;

    if (calls == MAX_EXTENT_CALLS ||
        store->extent (store->opaque, ask, offset, &run, &zero, &err) == -1)
      return 0;
    if (run == 0 || run > ask)
      run = ask;
    if (in_data && zero)
      ring[n++ % MAX_DATA_ENDS] = offset;
    in_data = !zero;
    offset += run;
  }
  if (in_data)
    ring[n++ % MAX_DATA_ENDS] = offset;
  for (unsigned i = 0; i < n && i < MAX_DATA_ENDS; i++)
    ends[i] = ring[(n - 1 - i) % MAX_DATA_ENDS];
  return n < MAX_DATA_ENDS ? n : MAX_DATA_ENDS;
}

/* Reads [offset, offset+len) into buf, leaving zeros where the store
 * fails to read: nothing here is worth stopping the server for.
 */
static void
read_tolerant (const struct remap_io *store, unsigned char *buf,
               uint64_t len, uint64_t offset)
{
  const uint32_t piece = 64 * 1024;
  int err;

  for (uint64_t done = 0; done < len; ) {
    uint32_t n = len - done < piece ? len - done : piece;
    if (store->pread (store->opaque, buf + done, n, offset + done, 0,
                      &err) == -1) {
      /* Retry sector by sector, so one bad sector hides only itself. */
      for (uint32_t s = 0; s < n; s += REMAP_MIN_SECTOR_SIZE) {
        uint32_t m = n - s < REMAP_MIN_SECTOR_SIZE ? n - s
          : REMAP_MIN_SECTOR_SIZE;
        if (store->pread (store->opaque, buf + done + s, m,
                          offset + done + s, 0, &err) == -1)
          memset (buf + done + s, 0, m);
      }
    }
    done += n;
  }
}

/* Whether the extents say [offset, offset+len) is all zeros. */
static bool
known_zero (const struct remap_io *store, uint64_t len, uint64_t offset)
{
  uint64_t run;
  bool zero;
  int err;

  return store->extent &&
    store->extent (store->opaque, len, offset, &run, &zero, &err) == 0 &&
    zero && run >= len;
}

uint64_t
remap_scan_headers (const struct remap_io *store, uint64_t from,
                    uint64_t to,
                    void (*found) (void *, uint64_t,
                                   const struct remap_header *),
                    void (*progress) (void *, uint64_t, uint64_t),
                    void *opaque)
{
  const uint32_t chunk = MIB;
  CLEANUP_FREE unsigned char *buf = malloc (chunk + REMAP_HEADER_BYTES);
  uint64_t count = 0;

  if (buf == NULL)
    return 0;
  from -= from % REMAP_MIN_SECTOR_SIZE;
  for (uint64_t off = from; off + REMAP_HEADER_BYTES <= to; off += chunk) {
    uint64_t len = to - off;
    if (len > chunk + REMAP_HEADER_BYTES)
      len = chunk + REMAP_HEADER_BYTES;
    if (!known_zero (store, len, off)) {
      read_tolerant (store, buf, len, off);
      for (uint64_t i = 0; i + REMAP_HEADER_BYTES <= len && i < chunk;
           i += REMAP_MIN_SECTOR_SIZE) {
        struct remap_header h;
        if (memcmp (buf + i, REMAP_MAGIC, REMAP_MAGIC_LEN) == 0 &&
            remap_header_decode (buf + i, &h) == REMAP_DECODE_OK &&
            h.geo.internal) {
          found (opaque, off + i, &h);
          count++;
        }
      }
    }
    if (progress)
      progress (opaque, off + len - from, to - from);
  }
  return count;
}

bool
remap_probe_nothing_readable (const struct remap_load_result *lr)
{
  for (int i = 0; i < REMAP_COPIES; i++)
    if (lr->copy[i].status != REMAP_DECODE_UNREADABLE)
      return false;
  return lr->found == REMAP_FOUND_DAMAGED;
}

/* Copies the first and last MiB of the disk into a sparse memfd of
 * the disk's size.  Returns the descriptor, or -1.
 */
static int
head_and_tail_memfd (const struct remap_io *store, uint64_t disk_size)
{
  CLEANUP_FREE unsigned char *buf = malloc (MIB);
  uint64_t spans[2][2] = {
    { 0, disk_size < MIB ? disk_size : MIB },
    { disk_size > MIB ? disk_size - MIB : 0, disk_size },
  };
  int fd;

  if (buf == NULL)
    return -1;
  fd = memfd_create ("remap-probe", MFD_CLOEXEC);
  if (fd == -1)
    return -1;
  if (ftruncate (fd, disk_size) == -1)
    goto error;
  for (int i = 0; i < 2; i++) {
    uint64_t len = spans[i][1] - spans[i][0];
    read_tolerant (store, buf, len, spans[i][0]);
    if (pwrite (fd, buf, len, spans[i][0]) != (ssize_t) len)
      goto error;
  }
  return fd;

 error:
  close (fd);
  return -1;
}

/* Names a filesystem, partition table, LVM or RAID signature in what[]
 * ("an ext4 filesystem"), or leaves it empty.
 */
static void
name_signature (const struct remap_io *store, uint64_t disk_size,
                char *what, size_t len)
{
  blkid_probe pr;
  const char *type = NULL, *usage = NULL;
  int fd, r;

  what[0] = '\0';
  fd = head_and_tail_memfd (store, disk_size);
  if (fd == -1)
    return;
  pr = blkid_new_probe ();
  if (pr == NULL ||
      blkid_probe_set_device (pr, fd, 0, disk_size) == -1) {
    if (pr)
      blkid_free_probe (pr);
    close (fd);
    return;
  }
  blkid_probe_enable_superblocks (pr, 1);
  blkid_probe_set_superblocks_flags (pr, BLKID_SUBLKS_TYPE |
                                     BLKID_SUBLKS_USAGE);
  blkid_probe_enable_partitions (pr, 1);
  r = blkid_do_safeprobe (pr);
  if (r == -2)
    snprintf (what, len, "more than one filesystem or partition table "
              "signature");
  else if (r == 0) {
    if (blkid_probe_lookup_value (pr, "TYPE", &type, NULL) == 0) {
      bool fs;
      blkid_probe_lookup_value (pr, "USAGE", &usage, NULL);
      fs = usage && strcmp (usage, "filesystem") == 0;
      snprintf (what, len, "a%s %s %s%s%s%s",
                strchr ("aeiou", type[0]) ? "n" : "", type,
                fs ? "filesystem" : "signature",
                usage && !fs ? " (" : "", usage && !fs ? usage : "",
                usage && !fs ? ")" : "");
    }
    else if (blkid_probe_lookup_value (pr, "PTTYPE", &type, NULL) == 0)
      snprintf (what, len, "a%s %s partition table",
                strchr ("aeiou", type[0]) ? "n" : "", type);
  }
  blkid_free_probe (pr);
  close (fd);
}

/* A spare file may be formatted when it is empty or reads as zeros:
 * it is ours to fill, and small next to the disk.
 */
static int
may_format_spare_file (const struct remap_options *opt,
                       const struct remap_io *store, uint64_t store_size)
{
  bool is_zero;
  int err;

  if (store_size == 0)
    return 0;
  if (remap_io_is_zero (store, store_size, 0, &is_zero, &err) == -1) {
    nbdkit_error ("remap: reading %s to check it is unused: %s",
                  opt->store_name, strerror (err));
    return -1;
  }
  if (is_zero)
    return 0;
  nbdkit_error ("%s holds data that is not remap metadata; refusing to "
                "overwrite it.  Give a new file name, or remap-format=yes "
                "to overwrite it", opt->store_name);
  return -1;
}

struct stray {
  uint64_t disk_size;           /* the disk's size now */
  uint64_t offset;              /* UINT64_MAX: none */
  struct remap_header h;
  uint64_t same_size_offset;    /* a header for this size, or UINT64_MAX */
};

/* Keeps the last header made for another disk size.  One made for
 * this size, but not found by the load, is a region whose copies at
 * the end are missing: noted apart.
 */
static void
keep_last (void *vp, uint64_t offset, const struct remap_header *h)
{
  struct stray *s = vp;

  if (h->geo.disk_size == s->disk_size) {
    s->same_size_offset = offset;
    return;
  }
  s->offset = offset;
  s->h = *h;
}

/* The ways out, said at the end of every refusal of a disk. */
#define WAYS_OUT \
  "  If the disk holds data, keep it untouched with remap-spare=FILE " \
  "(external mode: the spares and the table go to FILE); if it is " \
  "meant to be wiped, use remap-format=yes"

int
remap_probe_may_format (const struct remap_options *opt,
                        const struct remap_io *store, uint64_t store_size,
                        uint64_t disk_size, uint32_t sector_size,
                        uint32_t spares)
{
  struct stray stray;
  struct remap_geometry geo;
  char sig[256], why[256];
  uint64_t data_ends[MAX_DATA_ENDS];
  unsigned nr_ends;
  bool blank, known;
  int err;

  if (!opt->internal)
    return may_format_spare_file (opt, store, store_size);

  if (remap_probe_blank (store, disk_size, &blank, &known, &err) == -1)
    known = false;              /* an extents error proves nothing */
  if (blank)
    return 0;

  /* Metadata that a shrink or a small grow left in the last 64 MiB,
   * or that a grow left at the end of the data.
   */
  nr_ends = last_data_ends (store, disk_size, data_ends);
  stray.disk_size = disk_size;
  stray.offset = stray.same_size_offset = UINT64_MAX;
  remap_scan_headers (store, disk_size > STRAY_SCAN_BYTES
                      ? disk_size - STRAY_SCAN_BYTES : 0,
                      disk_size, keep_last, NULL, &stray);
  for (unsigned i = 0; i < nr_ends && stray.offset == UINT64_MAX; i++)
    if (data_ends[i] + STRAY_SCAN_BYTES <= disk_size)
      remap_scan_headers (store, data_ends[i] > MIB ? data_ends[i] - MIB : 0,
                          data_ends[i], keep_last, NULL, &stray);
  if (stray.offset != UINT64_MAX &&
      stray.h.geo.disk_size > disk_size) {
    nbdkit_error ("%s shrank: it holds remap metadata at offset %" PRIu64
                  " made for a disk of %" PRIu64 " bytes, but the disk is "
                  "now %" PRIu64 " bytes, and the remap metadata at its "
                  "end is gone.  Give the disk back its size to use its "
                  "remaps, or use remap-format=yes to discard them",
                  opt->store_name, stray.offset, stray.h.geo.disk_size,
                  disk_size);
    return -1;
  }
  if (stray.offset != UINT64_MAX) {
    nbdkit_error ("no remap metadata at the end of %s, but the disk is not "
                  "blank: was it grown?  It holds remap metadata at offset "
                  "%" PRIu64 " made for a disk of %" PRIu64 " bytes, and is "
                  "now %" PRIu64 " bytes.  Stop everything that uses the "
                  "disk and run 'remapctl --disk=DISK move-region' to move "
                  "the remap region to the new end, or give the disk back "
                  "its size (or put nbdkit-truncate-filter truncate=%" PRIu64
                  " below this filter)", opt->store_name, stray.offset,
                  stray.h.geo.disk_size, disk_size, stray.h.geo.disk_size);
    return -1;
  }

  if (stray.same_size_offset != UINT64_MAX) {
    nbdkit_error ("%s holds a remap metadata header for its size at offset "
                  "%" PRIu64 ", but no usable copy at its end: a remapctl "
                  "move-region was interrupted (run it again), or the "
                  "metadata is damaged (see remapctl check)",
                  opt->store_name, stray.same_size_offset);
    return -1;
  }

  name_signature (store, disk_size, sig, sizeof sig);
  if (sig[0]) {
    nbdkit_error ("%s holds %s and no remap metadata; refusing to format "
                  "it, since the remap region would cut off its end."
                  WAYS_OUT, opt->store_name, sig);
    return -1;
  }
  if (!known) {
    nbdkit_error ("%s has no remap metadata, and the plugin cannot report "
                  "which parts of it are unallocated (no extents), so it "
                  "cannot be proven blank; refusing to format it."
                  WAYS_OUT, opt->store_name);
    return -1;
  }
  /* Data, but none where the region goes: the shape of a disk that was
   * grown after a region whose header could not be found.
   */
  if (nr_ends > 0 &&
      remap_geometry_compute (&geo, true, disk_size, sector_size, spares,
                              why, sizeof why) == 0 &&
      data_ends[0] <= geo.region_offset) {
    nbdkit_error ("no remap metadata at the end of %s, but the disk is not "
                  "blank: was it grown?  If it was, 'remapctl --disk=DISK "
                  "find-region' looks for its old remap region."
                  WAYS_OUT, opt->store_name);
    return -1;
  }
  nbdkit_error ("%s holds data and no remap metadata; refusing to format "
                "it." WAYS_OUT, opt->store_name);
  return -1;
}
