/* remapctl: what the files of the tool share (see main.c). */
#ifndef REMAPCTL_H
#define REMAPCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <libnbd.h>
#include <nbdkit-filter.h>

#include "device.h"
#include "filestore.h"
#include "format.h"
#include "io.h"
#include "metadata.h"
#include "ranges.h"
#include "report.h"
#include "spares.h"
#include "sync.h"
#include "table.h"

#define EXIT_OK 0
#define EXIT_REPAIR 1           /* check: one copy bad or stale */
#define EXIT_DAMAGED 2          /* no usable copy */
#define EXIT_ERROR 3            /* anything else */

/* ---- Options (main.c). ---- */
extern int verbose;
extern const char *disk_path;
extern const char *spare_path;
extern const char *nbd_uri;
extern uint32_t sector_size_opt;        /* 0: not given */
extern uint64_t spare_bytes_opt;        /* --spare-size=SIZE */
extern uint32_t spare_pct_x100_opt;     /* --spare-size=N% */
extern bool force_opt;
extern bool json_opt;

extern void error_msg (const char *fs, ...)
  __attribute__ ((format (printf, 1, 2)));

/* ---- Endpoints and the target (target.c). ---- */

enum access { ACCESS_READ, ACCESS_WRITE, ACCESS_CREATE };

struct endpoint {
  const char *name;             /* path or URI, for messages */
  bool open;
  struct remap_file file;       /* file or device; fd -1 otherwise */
  struct nbd_handle *nbd;       /* NBD export, else NULL */
  bool nbd_extents;             /* base:allocation negotiated */
  uint64_t size;
  struct remap_io io;
};

struct target {
  bool internal;
  bool have_disk;
  struct endpoint disk;         /* the data disk (and store if internal) */
  struct endpoint spare;        /* external mode */
  const struct remap_io *store;
  uint64_t store_size;
  const char *store_name;       /* for messages */
  const struct remap_io *origin; /* the data disk, if open */
};

extern struct target target;

/* What a subcommand needs. */
enum need {
  NEED_READ,                    /* reads the store only */
  NEED_WRITE_STORE,             /* writes the store; data disk optional */
  NEED_WRITE_BOTH,              /* writes the store and the data disk */
  NEED_FORMAT,                  /* creates the store; needs the disk size */
};

/* Each returns 0 (EXIT_OK) or an exit status, unless said otherwise. */
extern int open_target (enum need need);
extern void close_target (bool remove_created);
extern const char *target_name (void);
extern int load_metadata (struct remap_load_result *lr);
extern const char *copy_name (int i);
extern bool copy_current (const struct remap_load_result *lr, int i);
extern void print_copies (FILE *fp, const struct remap_load_result *lr,
                          const char *indent);
extern void uuid_hex (const uint8_t uuid[16], char out[33]);
extern int require_valid (const struct remap_load_result *lr);
/* open_target, load_metadata and require_valid in one: on success the
 * caller frees lr->entries, on failure nothing is left to free.
 */
extern int load_valid (enum need need, struct remap_load_result *lr);
extern void warn_if_in_use (void);
extern void check_disk_size (const struct remap_geometry *g);
extern struct remap_device *make_view (const struct remap_load_result *lr);
extern struct remap_device *open_device (const struct remap_load_result *lr);
extern int begin_change (enum need need, struct remap_device **devp);
extern int finish_change (struct remap_device *dev, int status);
extern int parse_sector_args (int argc, char **argv,
                              struct remap_ranges *ranges);
extern int check_ranges (const struct remap_device *dev,
                         const struct remap_ranges *ranges);

/* ---- Subcommands. ---- */

struct subcommand {
  const char *name;
  const char *args;             /* for the usage line */
  const char *summary;
  const char *help;             /* details for SUBCOMMAND --help */
  int (*run) (int argc, char **argv);
  int min_args, max_args;       /* -1: no limit */
  bool takes_force, takes_json;
};

extern int cmd_show (int argc, char **argv);      /* inspect.c */
extern int cmd_dump (int argc, char **argv);
extern int cmd_check (int argc, char **argv);
extern int cmd_repair (int argc, char **argv);    /* edit.c */
extern int cmd_format (int argc, char **argv);
extern int cmd_add (int argc, char **argv);
extern int cmd_pending (int argc, char **argv);
extern int cmd_unmap (int argc, char **argv);
extern int cmd_import_ddrescue (int argc, char **argv);  /* ddrescue.c */
extern int cmd_export_ddrescue (int argc, char **argv);
extern int cmd_find_region (int argc, char **argv);   /* region.c */
extern int cmd_move_region (int argc, char **argv);

#endif /* REMAPCTL_H */
