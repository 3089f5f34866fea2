/* nbdkit-remap: the control protocol (see command.h): the commands,
 * their arguments and their JSON replies.  The socket, the clients and
 * the thread that serves them are in control.c.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "report.h"

#define LIST_DEFAULT 100
#define LIST_MAX 10000

/* Until the first NBD client connects there is no table (see
 * command.h): status and the commands that need the table say why.
 */
#define WHY_NOT_LOADED \
  "when the first NBD client connects, because nbdkit tells the " \
  "filter whether the server is read-only (-r) only then"

/* Parses a whole token as a decimal number. */
static bool
parse_number (const char *s, uint64_t *v)
{
  char *end;

  if (s == NULL || *s < '0' || *s > '9')
    return false;
  errno = 0;
  *v = strtoull (s, &end, 10);
  return errno == 0 && *end == '\0';
}

static void
reply_error (struct remap_buf *reply, const char *msg)
{
  remap_buf_printf (reply, "{\"ok\":false,\"error\":");
  remap_buf_json_string (reply, msg);
  remap_buf_printf (reply, "}");
}

static bool
parse_sector (struct remap_device *dev, const char *arg, uint64_t *sector,
              struct remap_buf *reply)
{
  char msg[256];

  if (!parse_number (arg, sector)) {
    reply_error (reply, "expected a sector number");
    return false;
  }
  if (*sector >= dev->geo.data_sectors) {
    snprintf (msg, sizeof msg, "sector %" PRIu64 " is past the end of the "
              "disk (it has %" PRIu64 " sectors)", *sector,
              dev->geo.data_sectors);
    reply_error (reply, msg);
    return false;
  }
  return true;
}

static void
reply_sector (struct remap_device *dev, uint64_t sector,
              struct remap_buf *reply)
{
  struct remap_entry e;

  remap_buf_printf (reply, "{\"ok\":true,\"sector\":%" PRIu64, sector);
  if (!remap_table_lookup (dev->table, sector, &e))
    remap_buf_printf (reply, ",\"state\":\"normal\"}");
  else if (e.state == REMAP_STATE_REMAPPED)
    remap_buf_printf (reply, ",\"state\":\"remapped\",\"spare\":%" PRIu32 "}",
                      e.spare);
  else
    remap_buf_printf (reply, ",\"state\":\"pending\"}");
}

/* The commands that need the table. */
static bool
needs_table (const char *command)
{
  return strcmp (command, "list") == 0 || strcmp (command, "remap") == 0 ||
    strcmp (command, "unmap") == 0 || strcmp (command, "sync") == 0;
}

void
remap_control_execute (struct remap_device *dev,
                       const struct remap_io *origin, const char *line,
                       struct remap_buf *reply)
{
  char copy[REMAP_COMMAND_MAX_LINE + 1], *save = NULL, *args[4] = { NULL };
  int nargs = 0, err;
  uint64_t sector, from = 0, count = LIST_DEFAULT;
  char msg[256];

  snprintf (copy, sizeof copy, "%s", line);
  for (char *tok = strtok_r (copy, " \t\r", &save); tok && nargs < 4;
       tok = strtok_r (NULL, " \t\r", &save))
    args[nargs++] = tok;
  if (nargs == 0) {
    reply_error (reply, "empty command; try help");
    return;
  }
  if (strtok_r (NULL, " \t\r", &save) != NULL || nargs == 4) {
    reply_error (reply, "too many arguments; try help");
    return;
  }

  if (strcmp (args[0], "help") == 0 && nargs == 1)
    remap_buf_printf (reply, "{\"ok\":true,\"commands\":["
                      "\"status\",\"list [FROM [COUNT]]\","
                      "\"remap SECTOR\",\"unmap SECTOR\",\"sync\","
                      "\"help\"]}");
  else if (strcmp (args[0], "status") == 0 && nargs == 1) {
    if (dev)
      remap_report_status (dev, reply);
    else
      remap_buf_printf (reply, "{\"ok\":true,\"state\":\"waiting\","
                        "\"message\":\"the remap table is loaded "
                        WHY_NOT_LOADED "\"}");
  }
  else if (dev == NULL && needs_table (args[0]))
    reply_error (reply, "the remap table is not loaded yet: it is loaded "
                 WHY_NOT_LOADED);
  else if (strcmp (args[0], "list") == 0) {
    if ((nargs > 1 && !parse_number (args[1], &from)) ||
        (nargs > 2 && (!parse_number (args[2], &count) || count == 0 ||
                       count > LIST_MAX))) {
      snprintf (msg, sizeof msg, "usage: list [FROM [COUNT]], COUNT 1 to %d",
                LIST_MAX);
      reply_error (reply, msg);
      return;
    }
    remap_report_list (dev, from, count, reply);
  }
  else if ((strcmp (args[0], "remap") == 0 ||
            strcmp (args[0], "unmap") == 0) && dev->opt.readonly)
    reply_error (reply, "the server is read-only: nothing can be remapped "
                 "or unmapped");
  else if (strcmp (args[0], "remap") == 0 && nargs == 2) {
    if (!parse_sector (dev, args[1], &sector, reply))
      return;
    if (remap_device_add (dev, origin, sector, sector, &err) == -1 ||
        remap_device_sync (dev, &err) == -1) {
      snprintf (msg, sizeof msg, "remapping sector %" PRIu64 " failed: %s",
                sector, strerror (err));
      reply_error (reply, msg);
      return;
    }
    reply_sector (dev, sector, reply);
  }
  else if (strcmp (args[0], "unmap") == 0 && nargs == 2) {
    if (!parse_sector (dev, args[1], &sector, reply))
      return;
    if (remap_device_unmap (dev, origin, sector, &err) == -1) {
      if (err == ENOENT)
        snprintf (msg, sizeof msg, "sector %" PRIu64 " is not remapped",
                  sector);
      else if (err == EIO)
        snprintf (msg, sizeof msg, "sector %" PRIu64 " does not keep data "
                  "yet (write or verify failed); it stays remapped", sector);
      else
        snprintf (msg, sizeof msg, "unmapping sector %" PRIu64 " failed: %s",
                  sector, strerror (err));
      reply_error (reply, msg);
      return;
    }
    reply_sector (dev, sector, reply);
  }
  else if (strcmp (args[0], "sync") == 0 && nargs == 1) {
    if (remap_device_sync (dev, &err) == -1) {
      snprintf (msg, sizeof msg, "sync failed: %s", strerror (err));
      reply_error (reply, msg);
      return;
    }
    remap_buf_printf (reply, "{\"ok\":true,\"generation\":%" PRIu64 "}",
                      __atomic_load_n (&dev->md.generation,
                                       __ATOMIC_RELAXED));
  }
  else
    reply_error (reply, "unknown command or wrong arguments; try help");
}
