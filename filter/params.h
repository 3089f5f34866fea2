/* nbdkit-remap: the filter's parameters (remap-*), parsed and checked
 * in .config and .config_complete, before anything is opened.
 */
#ifndef REMAP_PARAMS_H
#define REMAP_PARAMS_H

#include <nbdkit-filter.h>

#include "device.h"
#include "ranges.h"

struct remap_params {
  char *spare_path;                     /* remap-spare */
  struct remap_options options;
  struct remap_ranges add_ranges;       /* remap-add, remap-add-file */
  struct remap_ranges ddrescue_bytes;   /* remap-ddrescue, in bytes */
  char *ddrescue_path;
  char *control_path;                   /* remap-control */
  char *metrics_path;                   /* remap-metrics-file */
  /* What the plugin was given, for the store lock (storelock.c). */
  char **plugin_files;                  /* every file=, by realpath */
  size_t nr_plugin_files;
  char *plugin_key;                     /* "key=value\n" of every param */
  bool write_through;                   /* remap-write-through */
  bool plugin_cache;                    /* remap-plugin-cache */
};

/* Filled by .config; read-only once .config_complete has run. */
extern struct remap_params params;

extern void remap_params_init (void);
extern void remap_params_free (void);
extern int remap_params_config (nbdkit_next_config *next,
                                nbdkit_backend *nxdata,
                                const char *key, const char *value);
extern int remap_params_complete (nbdkit_next_config_complete *next,
                                  nbdkit_backend *nxdata);

#define remap_config_help \
  "remap-spare=FILE          Keep spares and table in FILE (default: on disk).\n" \
  "remap-spare-size=SIZE|N%  Size of the spare area (default 1%).\n" \
  "remap-sector-size=N       Remapping unit, 512..65536 (default 4096).\n" \
  "remap-format=yes          Format the spare area, discarding what is there.\n" \
  "remap-read-retries=N      Extra tries of a sector that fails to read (3).\n" \
  "remap-verify=yes          Read back every write; remap what differs.\n" \
  "remap-write-through=yes   Every write with FUA: writeback errors remap.\n" \
  "remap-plugin-cache=no     The plugin has no write cache: errors are immediate.\n" \
  "remap-pending-partial=fail|zero  Partial writes to unreadable sectors.\n" \
  "remap-warn=75%,90%        Spare-pool use that logs a warning.\n" \
  "remap-storm-limit=N       New bad sectors per minute that log an alarm.\n" \
  "remap-add=S[,S-S...]      Remap these sectors at startup.\n" \
  "remap-add-file=FILE       Remap the sectors listed in FILE at startup.\n" \
  "remap-ddrescue=MAPFILE    Mark the bad areas of a ddrescue mapfile pending.\n" \
  "remap-control=SOCKET      Serve the live control protocol on SOCKET.\n" \
  "remap-metrics-file=FILE   Keep Prometheus metrics in FILE."

#endif /* REMAP_PARAMS_H */
