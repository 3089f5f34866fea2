/* nbdkit-remap fuzzer: the metadata decoder.
 *
 * Input: one header slot (REMAP_HEADER_BYTES; a shorter input is
 * padded with zeros) followed by the table bytes (padded likewise up
 * to what the header's entry count needs).  Decodes the header and,
 * if it is valid, the entries.  Oracles, beyond "no crash, no
 * overrun": a decoded table keeps the documented order and bounds,
 * and a copy that decodes re-encodes to bytes that decode to the same
 * header and entries (what we load is what we would write).
 */
#include <config.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "fuzz-common.h"

/* This harness decodes a whole table at once (the load itself reads
 * it in chunks): past this size it only checks the header.
 */
#define MAX_TABLE (4 * 1024 * 1024)

static void
check_order (const struct remap_header *h, const struct remap_entry *e)
{
  const struct remap_geometry *g = &h->geo;
  bool retired_seen = false;

  for (uint32_t i = 0; i < h->entry_count; i++) {
    switch (e[i].state) {
    case REMAP_STATE_REMAPPED:
    case REMAP_STATE_PENDING:
      if (retired_seen || e[i].sector >= g->data_sectors ||
          (i > 0 && e[i].sector <= e[i-1].sector))
        fuzz_fail ("entry %" PRIu32 " (sector %" PRIu64 ") out of order "
                   "or past the %" PRIu64 " data sectors", i, e[i].sector,
                   g->data_sectors);
      if (e[i].state == REMAP_STATE_REMAPPED && e[i].spare >= g->spare_count)
        fuzz_fail ("entry %" PRIu32 ": spare %" PRIu32 " of %" PRIu32,
                   i, e[i].spare, g->spare_count);
      break;
    case REMAP_STATE_RETIRED:
      if (e[i].spare >= g->spare_count ||
          (retired_seen && e[i].spare <= e[i-1].spare))
        fuzz_fail ("retired entry %" PRIu32 " bad", i);
      retired_seen = true;
      break;
    default:
      fuzz_fail ("entry %" PRIu32 ": state %" PRIu32 " accepted",
                 i, e[i].state);
    }
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  unsigned char hbuf[REMAP_HEADER_BYTES] = { 0 };
  unsigned char hbuf2[REMAP_HEADER_BYTES];
  struct remap_header h, h2;
  struct remap_entry *entries = NULL, *entries2 = NULL;
  unsigned char *table = NULL, *table2 = NULL;
  size_t table_len, have;
  enum remap_decode_status st;

  memcpy (hbuf, data, size < sizeof hbuf ? size : sizeof hbuf);
  if (remap_header_decode (hbuf, &h) != REMAP_DECODE_OK)
    return 0;

  /* What the decoder accepts, the layout code would have produced. */
  if (h.entry_count > h.geo.entry_capacity ||
      h.copy_index >= REMAP_COPIES ||
      h.geo.header_offset[1] + h.geo.header_bytes !=
      h.geo.region_offset + h.geo.region_size)
    fuzz_fail ("header accepted with impossible fields");

  table_len = (size_t) h.entry_count * REMAP_ENTRY_BYTES;
  if (table_len > MAX_TABLE)
    return 0;
  table = calloc (1, table_len ? table_len : 1);
  table2 = calloc (1, table_len ? table_len : 1);
  entries = calloc (h.entry_count ? h.entry_count : 1, sizeof *entries);
  entries2 = calloc (h.entry_count ? h.entry_count : 1, sizeof *entries2);
  if (!table || !table2 || !entries || !entries2)
    abort ();
  have = size > REMAP_HEADER_BYTES ? size - REMAP_HEADER_BYTES : 0;
  memcpy (table, data + REMAP_HEADER_BYTES, have < table_len ? have : table_len);

  st = remap_entries_decode (&h, hbuf, table, entries);
  if (st != REMAP_DECODE_OK)
    goto out;
  check_order (&h, entries);

  /* Round trip. */
  remap_entries_encode (entries, h.entry_count, table2);
  remap_header_encode (&h, table2, hbuf2);
  if (remap_header_decode (hbuf2, &h2) != REMAP_DECODE_OK)
    fuzz_fail ("a re-encoded header does not decode");
  if (!remap_geometry_equal (&h.geo, &h2.geo) ||
      h.copy_index != h2.copy_index || h.generation != h2.generation ||
      h.entry_count != h2.entry_count ||
      memcmp (h.counters, h2.counters, sizeof h.counters) != 0)
    fuzz_fail ("a re-encoded header decodes differently");
  if (remap_entries_decode (&h2, hbuf2, table2, entries2) != REMAP_DECODE_OK)
    fuzz_fail ("re-encoded entries do not decode");
  for (uint32_t i = 0; i < h.entry_count; i++)
    if (entries[i].sector != entries2[i].sector ||
        entries[i].spare != entries2[i].spare ||
        entries[i].state != entries2[i].state)
      fuzz_fail ("entry %" PRIu32 " changes in a round trip", i);

 out:
  free (table);
  free (table2);
  free (entries);
  free (entries2);
  return 0;
}
