/* nbdkit-remap fuzzer: the control protocol (remap_control_execute),
 * on a small in-memory device built the way tests/unit/test-device.c
 * builds one (tests/unit/memdisk.c, internal region, 512-byte
 * sectors, 16 spares), formatted afresh for every input.
 *
 * Input: one configuration byte, then the sector numbers it asks for,
 * then command lines separated by '\n', each executed in turn (as the
 * server does: lines with a NUL byte and lines over 4096 bytes never
 * reach the protocol), and each also without a device, as the server
 * runs it before its first client has loaded the table.
 *   config bits 0-1: sectors whose writes fail (0-3)
 *          bits 2-3: sectors whose reads fail (0-3)
 *          bit 4:    remap-verify
 *          bit 5:    remap-pending-partial=zero
 *   each sector: one byte, times 2.
 *
 * Oracles: no crash, leak or undefined behaviour; every reply is one
 * valid JSON object starting {"ok":; and the table survives a restart:
 * after the device is stopped (which saves the last changes) and
 * opened again over the same disk (failures healed), "list" shows the
 * same entries as before.
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "device.h"
#include "format.h"
#include "fuzz-common.h"
#include "memdisk.h"
#include "report.h"

#define SS 512
#define DISK_SIZE (256 * 1024)
#define NR_SPARES 16
#define MAX_LINE 4096
#define MAX_LINES 64

/* Runs one line and checks that the reply is one JSON object. */
static void
execute (struct remap_device *dev, const struct remap_io *origin,
         const char *line)
{
  struct remap_buf reply = { 0 };

  remap_control_execute (dev, origin, line, &reply);
  if (!reply.failed) {
    if (reply.len < 7 || memcmp (reply.p, "{\"ok\":", 6) != 0 ||
        !fuzz_json_valid (reply.p, reply.len))
      fuzz_fail ("reply to \"%s\"%s is not a JSON object {\"ok\":...}: "
                 "%.*s", line, dev ? "" : " (no table yet)",
                 (int) reply.len, reply.p);
  }
  remap_buf_free (&reply);
}

static struct remap_device *
open_device (struct memdisk *d, const struct remap_options *opt)
{
  return remap_device_open (opt, &d->io, d->size, d->size);
}

static void
list_all (struct remap_device *dev, struct remap_buf *b)
{
  remap_report_list (dev, 0, 100000, b);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct memdisk *d;
  struct remap_device *dev;
  struct remap_options opt;
  struct remap_buf before = { 0 }, after = { 0 };
  size_t pos = 0, nlines = 0;
  unsigned nbw, nbr;

  if (size < 1)
    return 0;
  d = memdisk_new (DISK_SIZE, SS);
  if (d == NULL)
    abort ();
  remap_options_init (&opt);
  opt.internal = true;
  opt.sector_size = SS;
  opt.spare_bytes = NR_SPARES * SS;
  opt.store_name = "the fuzz disk";
  opt.verify = data[0] & 0x10;
  opt.pending_partial_zero = data[0] & 0x20;
  nbw = data[0] & 3;
  nbr = (data[0] >> 2) & 3;
  pos = 1;

  dev = open_device (d, &opt);
  if (dev == NULL)
    fuzz_fail ("a blank in-memory disk does not open");
  for (unsigned i = 0; i < nbw + nbr && pos < size; i++, pos++) {
    uint64_t s = (uint64_t) data[pos] * 2 % dev->geo.data_sectors;
    if (i < nbw)
      memdisk_fail_write (d, s);
    else
      memdisk_fail_read (d, s);
  }

  while (pos < size && nlines < MAX_LINES) {
    const uint8_t *nl = memchr (data + pos, '\n', size - pos);
    size_t len = nl ? (size_t) (nl - (data + pos)) : size - pos;
    char line[MAX_LINE + 1];

    if (len <= MAX_LINE && memchr (data + pos, '\0', len) == NULL) {
      memcpy (line, data + pos, len);
      line[len] = '\0';
      execute (dev, &d->io, line);
      execute (NULL, NULL, line);
      nlines++;
    }
    pos += len + 1;
  }

  /* Stop (saves the last changes), reopen healed: same table. */
  list_all (dev, &before);
  remap_device_stop (dev);
  remap_device_free (dev);
  memdisk_heal (d);
  dev = open_device (d, &opt);
  if (dev == NULL)
    fuzz_fail ("the table left by the commands does not load again");
  list_all (dev, &after);
  if (!before.failed && !after.failed &&
      (before.len != after.len || memcmp (before.p, after.p, before.len)))
    fuzz_fail ("the table changed across a restart:\n  before %.*s\n  "
               "after  %.*s", (int) before.len, before.p,
               (int) after.len, after.p);
  remap_buf_free (&before);
  remap_buf_free (&after);
  remap_device_stop (dev);
  remap_device_free (dev);
  memdisk_free (d);
  return 0;
}
