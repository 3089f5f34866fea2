/* nbdkit-remap: status, list and metrics reports (see report.h).
 *
 * The health verdict:
 *   failing   no spare left, or a remap storm in the last minute, or
 *             spare use at or past the highest remap-warn threshold;
 *   degraded  any sector remapped or pending, any spare retired, or a
 *             metadata copy that could not be written;
 *   ok        none of that.
 */
#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "report.h"

void
remap_buf_printf (struct remap_buf *b, const char *fs, ...)
{
  va_list args;
  int n;

  if (b->failed)
    return;
  for (;;) {
    size_t room = b->cap - b->len;
    va_start (args, fs);
    n = vsnprintf (b->p ? b->p + b->len : NULL, room, fs, args);
    va_end (args);
    if (n < 0) {
      b->failed = true;
      return;
    }
    if ((size_t) n < room) {
      b->len += n;
      return;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc (b->p, cap);
    if (p == NULL) {
      b->failed = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
}

void
remap_buf_free (struct remap_buf *b)
{
  free (b->p);
  memset (b, 0, sizeof *b);
}

void
remap_buf_json_string (struct remap_buf *b, const char *s)
{
  remap_buf_printf (b, "\"");
  for (; *s; s++) {
    unsigned char c = *s;
    if (c == '"' || c == '\\')
      remap_buf_printf (b, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f)
      remap_buf_printf (b, "\\u%04x", c);
    else
      remap_buf_printf (b, "%c", c);
  }
  remap_buf_printf (b, "\"");
}

static bool
degraded_copies (struct remap_device *dev)
{
  for (int i = 0; i < REMAP_COPIES; i++)
    if (!__atomic_load_n (&dev->md.copy_valid[i], __ATOMIC_RELAXED))
      return true;
  return false;
}

const char *
remap_health_verdict (struct remap_device *dev)
{
  uint64_t total = remap_spares_total (dev->spares);
  uint64_t taken = remap_spares_used (dev->spares) +
    remap_spares_retired (dev->spares);
  bool storm, top_warned;

  struct timespec now;

  clock_gettime (CLOCK_MONOTONIC, &now);
  pthread_mutex_lock (&dev->health_lock);
  storm = dev->storm_logged &&
    (uint64_t) now.tv_sec < dev->storm_window_start + 60;
  top_warned = dev->opt.nr_warn > 0 &&
    taken * 10000 >= total * dev->opt.warn_x100[dev->opt.nr_warn - 1];
  pthread_mutex_unlock (&dev->health_lock);
  if (taken >= total || storm || top_warned)
    return "failing";
  if (taken > 0 || remap_device_pending (dev) > 0 || degraded_copies (dev))
    return "degraded";
  return "ok";
}

void
remap_report_status (struct remap_device *dev, struct remap_buf *b)
{
  const struct remap_geometry *g = &dev->geo;
  struct remap_sync_stats st;
  uint32_t used = remap_spares_used (dev->spares);
  uint32_t retired = remap_spares_retired (dev->spares);
  unsigned slots_owned;
  uint64_t unslotted;

  remap_sync_get_stats (dev->sync, &st);
  remap_buf_printf (b, "{\"ok\":true,\"health\":\"%s\","
                    "\"state\":\"loaded\",\"mode\":\"%s\","
                    "\"geometry\":{\"sector_size\":%" PRIu32
                    ",\"disk_size\":%" PRIu64 ",\"export_size\":%" PRIu64
                    ",\"sectors\":%" PRIu64 ",\"spare_offset\":%" PRIu64
                    "},",
                    remap_health_verdict (dev),
                    g->internal ? "internal" : "external", g->sector_size,
                    g->disk_size, g->export_size, g->data_sectors,
                    g->spare_offset);
  remap_buf_printf (b, "\"spares\":{\"total\":%" PRIu32 ",\"used\":%" PRIu32
                    ",\"retired\":%" PRIu32 ",\"free\":%" PRIu32 "},"
                    "\"pending\":%" PRIu64 ",\"counters\":{",
                    g->spare_count, used, retired,
                    g->spare_count - used - retired,
                    remap_device_pending (dev));
  for (int i = 0; i < REMAP_NR_COUNTERS_USED; i++)
    remap_buf_printf (b, "%s\"%s\":%" PRIu64, i ? "," : "",
                      remap_counter_name (i), remap_device_counter (dev, i));
  remap_counters_slot_stats (dev, &slots_owned, &unslotted);
  remap_buf_printf (b, "},\"counter_slots\":{\"total\":%d,\"owned\":%u,"
                    "\"threads_without\":%" PRIu64 "}",
                    REMAP_COUNTER_SLOTS, slots_owned, unslotted);
  remap_buf_printf (b, ",\"metadata\":{\"generation\":%" PRIu64
                    ",\"copies_valid\":%s,\"syncs\":%" PRIu64
                    ",\"sync_failures\":%" PRIu64 ",\"last_sync_time\":%"
                    PRIu64 ",\"last_sync_duration_ns\":%" PRIu64
                    ",\"dirty\":%s,\"copies\":[",
                    __atomic_load_n (&dev->md.generation, __ATOMIC_RELAXED),
                    degraded_copies (dev) ? "false" : "true",
                    st.syncs, st.failures, st.last_sync_time,
                    st.last_duration_ns,
                    remap_sync_is_dirty (dev->sync) ? "true" : "false");
  for (int i = 0; i < REMAP_COPIES; i++) {
    uint32_t location = __atomic_load_n (&dev->md.location[i],
                                         __ATOMIC_RELAXED);
    uint64_t header_offset, table_offset;

    remap_copy_offsets (g, i, location, &header_offset, &table_offset);
    remap_buf_printf (b, "%s{\"offset\":%" PRIu64 ",\"moved\":%s,"
                      "\"valid\":%s}", i ? "," : "", header_offset,
                      location == REMAP_LOCATION_HOME ? "false" : "true",
                      __atomic_load_n (&dev->md.copy_valid[i],
                                       __ATOMIC_RELAXED) ? "true" : "false");
  }
  remap_buf_printf (b, "]}}");
}

static const char *
state_name (uint32_t state)
{
  switch (state) {
  case REMAP_STATE_REMAPPED: return "remapped";
  case REMAP_STATE_PENDING: return "pending";
  case REMAP_STATE_RETIRED: return "retired";
  default: return "unknown";
  }
}

void
remap_report_list (struct remap_device *dev, uint64_t from, uint64_t count,
                   struct remap_buf *b)
{
  CLEANUP_FREE struct remap_entry *entries = NULL;
  CLEANUP_FREE uint32_t *retired = NULL;
  ssize_t n = remap_table_snapshot (dev->table,
                                    REMAP_STATE_REMAPPED | REMAP_STATE_PENDING,
                                    &entries);
  ssize_t nr = remap_spares_retired_list (dev->spares, &retired);
  uint64_t total, i, shown = 0;

  if (n == -1 || nr == -1) {
    b->failed = true;
    return;
  }
  total = n + nr;
  remap_buf_printf (b, "{\"ok\":true,\"total\":%" PRIu64 ",\"from\":%" PRIu64
                    ",\"entries\":[", total, from);
  for (i = from; i < total && shown < count; i++, shown++) {
    if (i < (uint64_t) n) {
      remap_buf_printf (b, "%s{\"sector\":%" PRIu64 ",\"state\":\"%s\"",
                        shown ? "," : "", entries[i].sector,
                        state_name (entries[i].state));
      if (entries[i].state == REMAP_STATE_REMAPPED)
        remap_buf_printf (b, ",\"spare\":%" PRIu32, entries[i].spare);
      else if (entries[i].spare == REMAP_LOST_DATA)
        remap_buf_printf (b, ",\"data_lost\":true");
      remap_buf_printf (b, "}");
    }
    else
      remap_buf_printf (b, "%s{\"state\":\"retired\",\"spare\":%" PRIu32 "}",
                        shown ? "," : "", retired[i - n]);
  }
  remap_buf_printf (b, "],\"count\":%" PRIu64 ",\"next\":%s", shown,
                    i < total ? "" : "null");
  if (i < total)
    remap_buf_printf (b, "%" PRIu64, i);
  remap_buf_printf (b, "}");
}

static void
metric (struct remap_buf *b, const char *name, const char *type,
        const char *help, uint64_t value)
{
  remap_buf_printf (b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n",
                    name, help, name, type, name, value);
}

void
remap_report_metrics (struct remap_device *dev, struct remap_buf *b)
{
  struct remap_sync_stats st;
  const char *verdict;

  metric (b, "nbdkit_remap_table_loaded", "gauge",
          "1 once the remap table is loaded (when the first NBD client "
          "connects), 0 before.", dev != NULL);
  if (dev == NULL)
    return;
  verdict = remap_health_verdict (dev);
  remap_sync_get_stats (dev->sync, &st);
  metric (b, "nbdkit_remap_spares_total", "gauge",
          "Spare sectors in the pool.", remap_spares_total (dev->spares));
  metric (b, "nbdkit_remap_spares_used", "gauge",
          "Spare sectors holding remapped data.",
          remap_spares_used (dev->spares));
  metric (b, "nbdkit_remap_spares_retired", "gauge",
          "Spare sectors retired after failing.",
          remap_spares_retired (dev->spares));
  metric (b, "nbdkit_remap_pending_sectors", "gauge",
          "Sectors that failed to read and await a rewrite.",
          remap_device_pending (dev));
  metric (b, "nbdkit_remap_remaps_total", "counter",
          "Sectors moved to a spare.",
          remap_device_counter (dev, REMAP_COUNTER_REMAPS));
  metric (b, "nbdkit_remap_recovered_total", "counter",
          "Pending sectors that rewrote and verified.",
          remap_device_counter (dev, REMAP_COUNTER_RECOVERED));
  metric (b, "nbdkit_remap_read_errors_total", "counter",
          "Sector reads that failed every try.",
          remap_device_counter (dev, REMAP_COUNTER_READ_ERRORS));
  metric (b, "nbdkit_remap_write_errors_total", "counter",
          "Sector writes the plugin failed or did not keep.",
          remap_device_counter (dev, REMAP_COUNTER_WRITE_ERRORS));
  metric (b, "nbdkit_remap_redirected_ios_total", "counter",
          "Requests that touched a remapped or pending sector.",
          remap_device_counter (dev, REMAP_COUNTER_REDIRECTED));
  metric (b, "nbdkit_remap_metadata_syncs_total", "counter",
          "Metadata writes since the server started.", st.syncs);
  remap_buf_printf (b, "# HELP nbdkit_remap_metadata_sync_duration_seconds "
                    "Duration of the last metadata write.\n"
                    "# TYPE nbdkit_remap_metadata_sync_duration_seconds "
                    "gauge\nnbdkit_remap_metadata_sync_duration_seconds "
                    "%.9f\n", st.last_duration_ns / 1e9);
  remap_buf_printf (b, "# HELP nbdkit_remap_health Health verdict (1 for "
                    "the current state).\n# TYPE nbdkit_remap_health gauge\n");
  for (int i = 0; i < 3; i++) {
    static const char *states[] = { "ok", "degraded", "failing" };
    remap_buf_printf (b, "nbdkit_remap_health{state=\"%s\"} %d\n", states[i],
                      strcmp (verdict, states[i]) == 0);
  }
}
