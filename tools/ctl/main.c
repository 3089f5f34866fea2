/* remapctl: inspect, check, repair and edit the metadata of
 * nbdkit-remap-filter while no server is using it.  This file: the
 * options, the messages, the list of subcommands and main.
 *
 * Everything about the on-disk format goes through the core library
 * (filter/libremapcore.la): remap_metadata_load finds and checks the
 * copies, remap_metadata_write rewrites them, and remap_device_open
 * plus remap_device_add/mark_pending/unmap/sync make the same changes
 * the filter makes.  remapctl only supplies the I/O (target.c: a
 * file, a block device or an NBD export through libnbd), the locking,
 * the command line and the output.  The subcommands: inspect.c (show,
 * dump, check), edit.c (repair, format, add, pending, unmap),
 * ddrescue.c (import-ddrescue, export-ddrescue), region.c
 * (find-region, move-region).
 *
 * Exit status: 0 success; 1 (check) a copy needs repair; 2 the
 * metadata is damaged (no usable copy); 3 any other error, including
 * "in use by a running nbdkit".  See man/remapctl.pod.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remapctl.h"

/* ---- Options. ---- */

int verbose;
const char *disk_path;
const char *spare_path;
const char *nbd_uri;
uint32_t sector_size_opt;        /* 0: not given */
uint64_t spare_bytes_opt;        /* --spare-size=SIZE */
uint32_t spare_pct_x100_opt;     /* --spare-size=N% */
bool force_opt;
bool json_opt;

/* ---- Messages. ---- */

void
error_msg (const char *fs, ...)
{
  va_list args;

  fputs ("remapctl: ", stderr);
  va_start (args, fs);
  vfprintf (stderr, fs, args);
  va_end (args);
  fputc ('\n', stderr);
}

/* The core reports through these two, which nbdkit normally supplies.
 * Its messages start "remap: "; we print ours with our own name.
 */
static void
core_message (const char *prefix, const char *fs, va_list args)
{
  char buf[4096];
  const char *p = buf;

  vsnprintf (buf, sizeof buf, fs, args);
  if (strncmp (p, "remap: ", 7) == 0)
    p += 7;
  fprintf (stderr, "remapctl: %s%s\n", prefix, p);
}

void
nbdkit_error (const char *fs, ...)
{
  va_list args;
  int saved_errno = errno;      /* for %m */

  va_start (args, fs);
  errno = saved_errno;
  core_message ("", fs, args);
  va_end (args);
  errno = saved_errno;
}

void
nbdkit_debug (const char *fs, ...)
{
  va_list args;
  int saved_errno = errno;

  if (!verbose)
    return;
  va_start (args, fs);
  errno = saved_errno;
  core_message ("debug: ", fs, args);
  va_end (args);
  errno = saved_errno;
}

static const struct subcommand subcommands[] = {
  { "show", "", "print the geometry, copies, spares, counters and entries",
    "Prints the geometry, the mode, the generation, the state of each\n"
    "metadata copy, the spares (used, free, retired), the pending\n"
    "sectors, the counters and every table entry.  With --json, the\n"
    "same as 'dump'.\n",
    cmd_show, 0, 0, false, true },
  { "dump", "[--json]", "print the same as JSON",
    "Prints one JSON object: the store, its identity, each copy, and\n"
    "the \"status\" and \"list\" replies of the filter's control socket.\n",
    cmd_dump, 0, 0, false, true },
  { "check", "", "check both metadata copies (exit 0, 1 or 2)",
    "Reads both metadata copies and says which are valid.  Exit status:\n"
    "0 healthy (both valid, same generation), 1 repair needed (one copy\n"
    "bad or stale), 2 damaged (no usable copy), 3 other error.\n",
    cmd_check, 0, 0, false, false },
  { "repair", "", "rewrite bad or stale copies from the newest valid one",
    "Rewrites every copy from the newest valid one, with the same\n"
    "entries.  Refuses (exit 2) if no copy is valid.\n",
    cmd_repair, 0, 0, false, false },
  { "format", "[--force] [--spare-size=SIZE|N%]", "create an empty table",
    "Lays out and writes an empty table.  Refuses to overwrite existing\n"
    "metadata or an area holding data unless --force is given.  In\n"
    "external mode the data disk (--disk or --uri) gives the size.\n"
    "  --spare-size=SIZE|N%  spare area (default 1% of the disk, at\n"
    "                        least 64 sectors); SIZE may end in K, M, G, T\n"
    "  --sector-size=N       remapping unit (default 4096)\n"
    "  -f, --force           destroy what is there\n",
    cmd_format, 0, 0, true, false },
  { "add", "SECTOR...", "remap sectors now, copying their data to spares",
    "Moves each sector to a spare, copying its current data.  A sector\n"
    "that cannot be read is marked pending instead (with a warning).\n"
    "Sectors are numbers or ranges (5 7-9 12,14) in units of the sector\n"
    "size.  In external mode the data disk is needed too.\n",
    cmd_add, 1, -1, false, false },
  { "pending", "SECTOR...", "mark sectors pending (unreadable)",
    "Marks sectors pending: the filter fails reads of them until a write\n"
    "gives them new contents.  Remapped sectors are left alone.\n",
    cmd_pending, 1, -1, false, false },
  { "unmap", "SECTOR...", "move remapped sectors back to their place",
    "Copies each remapped sector back from its spare, reads it back,\n"
    "and only if it matches removes the entry and frees the spare.  A\n"
    "single sector must be remapped; a range stands for the remapped\n"
    "sectors in it.  In external mode the data disk is needed too.\n",
    cmd_unmap, 1, -1, false, false },
  { "import-ddrescue", "MAPFILE", "mark the bad areas of a mapfile pending",
    "Marks every sector touched by a bad ('-') area of a GNU ddrescue\n"
    "mapfile pending.  Areas past the end of the export are ignored.\n",
    cmd_import_ddrescue, 1, 1, false, false },
  { "export-ddrescue", "", "print the bad sectors as a ddrescue mapfile",
    "Prints a GNU ddrescue mapfile covering the export: the remapped\n"
    "and pending sectors are bad ('-'), everything else finished ('+').\n"
    "nbdkit-ddrescue-filter(1) accepts it.\n",
    cmd_export_ddrescue, 0, 0, false, false },
  { "find-region", "", "look for the remap region of a grown disk",
    "Internal mode.  When the filter refuses a disk with 'was it grown?',\n"
    "reads the whole disk (holes skipped; a progress bar on a terminal)\n"
    "for the remap region made for its old size, and describes it.\n",
    cmd_find_region, 0, 0, false, false },
  { "move-region", "", "move the remap region of a grown disk to its end",
    "Internal mode.  Finds the region as find-region does, copies the\n"
    "used spares and the table to a region at the new end, makes it\n"
    "durable and checks it loads, and only then clears the old region,\n"
    "which becomes part of the export.  Interrupted, it leaves the old\n"
    "region intact (run it again) or the new one complete.\n",
    cmd_move_region, 0, 0, false, false },
};
#define NR_SUBCOMMANDS (sizeof subcommands / sizeof subcommands[0])

/* ---- Command line. ---- */

static const char global_options_help[] =
  "Where the metadata is (one of):\n"
  "  -d, --disk=IMAGE      internal mode: the image or device whose end\n"
  "                        holds the remap region\n"
  "  -u, --uri=NBD-URI     the same over NBD, for a disk served by nbdkit\n"
  "                        without the remap filter\n"
  "  -s, --spare=FILE      external mode: the spare file (with --disk or\n"
  "                        --uri for the data disk where needed)\n"
  "Other options:\n"
  "      --sector-size=N   sector size used to find copy A when header B\n"
  "                        is lost (default 4096); for format, the unit\n"
  "      --spare-size=SIZE|N%  the same for the spare area size\n"
  "  -v, --verbose         print debugging messages\n"
  "  -h, --help            print this help (or a subcommand's)\n"
  "  -V, --version         print the version\n";

static void
usage (FILE *fp)
{
  fprintf (fp,
           "Usage: remapctl [OPTIONS] SUBCOMMAND [ARGS...]\n"
           "Inspects, checks, repairs and edits the metadata of\n"
           "nbdkit-remap-filter while no server uses it.\n\n%s\n"
           "Subcommands:\n", global_options_help);
  for (size_t i = 0; i < NR_SUBCOMMANDS; i++) {
    char left[64];
    snprintf (left, sizeof left, "%s %s", subcommands[i].name,
              subcommands[i].args);
    if (strlen (left) > 28)
      fprintf (fp, "  %s\n  %-28s %s\n", left, "", subcommands[i].summary);
    else
      fprintf (fp, "  %-28s %s\n", left, subcommands[i].summary);
  }
  fprintf (fp, "\nRun 'remapctl SUBCOMMAND --help' for details.\n"
           "Exit status: 0 success, 1 repair needed (check), 2 metadata "
           "damaged,\n3 any other error (including in use by a running "
           "nbdkit).\n"
           "See remapctl(1).\n");
}

static void
subcommand_usage (const struct subcommand *sc)
{
  printf ("Usage: remapctl [OPTIONS] %s %s\n\n%s\n%s", sc->name, sc->args,
          sc->help, global_options_help);
}

enum {
  OPT_SECTOR_SIZE = 256,
  OPT_SPARE_SIZE,
  OPT_JSON,
};

static const struct option long_options[] = {
  { "disk", required_argument, NULL, 'd' },
  { "spare", required_argument, NULL, 's' },
  { "uri", required_argument, NULL, 'u' },
  { "sector-size", required_argument, NULL, OPT_SECTOR_SIZE },
  { "spare-size", required_argument, NULL, OPT_SPARE_SIZE },
  { "force", no_argument, NULL, 'f' },
  { "json", no_argument, NULL, OPT_JSON },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { "version", no_argument, NULL, 'V' },
  { NULL, 0, NULL, 0 },
};

/* A size in bytes with an optional binary suffix: 64K, 1M, 2G. */
static int
parse_size (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno)
    return -1;
  switch (*end) {
  case '\0': break;
  case 'b': case 'B': end++; break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  case 'p': case 'P': shift = 50; end++; break;
  default: return -1;
  }
  if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
    return -1;
  *out = (uint64_t) v << shift;
  return 0;
}

/* Handles one option; returns 0, or an exit status for bad input, or
 * -1 for --help (the caller prints the right help).
 */
static int
handle_option (int c, const char *arg)
{
  uint64_t v;

  switch (c) {
  case 'd': disk_path = arg; return 0;
  case 's': spare_path = arg; return 0;
  case 'u': nbd_uri = arg; return 0;
  case 'f': force_opt = true; return 0;
  case 'v': verbose++; remap_debug_verbose = 1; return 0;
  case OPT_JSON: json_opt = true; return 0;
  case 'h': return -1;
  case 'V':
    printf ("remapctl (nbdkit-remap) %s\n", PACKAGE_VERSION);
    exit (EXIT_OK);
  case OPT_SECTOR_SIZE:
    if (parse_size (arg, &v) == -1 || v < REMAP_MIN_SECTOR_SIZE ||
        v > REMAP_MAX_SECTOR_SIZE || (v & (v - 1)) != 0) {
      error_msg ("--sector-size=%s: must be a power of two from %d to %d",
                 arg, REMAP_MIN_SECTOR_SIZE, REMAP_MAX_SECTOR_SIZE);
      return EXIT_ERROR;
    }
    sector_size_opt = v;
    return 0;
  case OPT_SPARE_SIZE:
    spare_bytes_opt = 0;
    spare_pct_x100_opt = 0;
    if (strchr (arg, '%')) {
      if (remap_parse_percent (arg, &spare_pct_x100_opt, 5000) == -1) {
        error_msg ("--spare-size=%s: a percentage must be more than 0%% "
                   "and at most 50%%, with at most two decimals (like 1%% "
                   "or 0.25%%)", arg);
        return EXIT_ERROR;
      }
    }
    else if (parse_size (arg, &spare_bytes_opt) == -1 ||
             spare_bytes_opt == 0) {
      error_msg ("--spare-size=%s: give a size in bytes (with an optional "
                 "K, M, G or T) or a percentage like 1%%", arg);
      return EXIT_ERROR;
    }
    return 0;
  default:
    error_msg ("try 'remapctl --help'");
    return EXIT_ERROR;
  }
}

int
main (int argc, char **argv)
{
  const struct subcommand *sc = NULL;
  int c, r, sub_argc;
  char **sub_argv;

  /* Options before the subcommand. */
  opterr = 1;
  while ((c = getopt_long (argc, argv, "+d:s:u:fvhV", long_options,
                           NULL)) != -1) {
    r = handle_option (c, optarg);
    if (r == -1) {
      usage (stdout);
      return EXIT_OK;
    }
    if (r != 0)
      return r;
  }
  if (optind >= argc) {
    error_msg ("no subcommand given");
    usage (stderr);
    return EXIT_ERROR;
  }
  for (size_t i = 0; i < NR_SUBCOMMANDS; i++)
    if (strcmp (argv[optind], subcommands[i].name) == 0)
      sc = &subcommands[i];
  if (sc == NULL) {
    error_msg ("unknown subcommand '%s'; try 'remapctl --help'",
               argv[optind]);
    return EXIT_ERROR;
  }

  /* The subcommand's options (the global ones are accepted here too)
   * and arguments.
   */
  sub_argc = argc - optind;
  sub_argv = argv + optind;
  optind = 0;                   /* start a fresh scan */
  while ((c = getopt_long (sub_argc, sub_argv, "d:s:u:fvhV", long_options,
                           NULL)) != -1) {
    r = handle_option (c, optarg);
    if (r == -1) {
      subcommand_usage (sc);
      return EXIT_OK;
    }
    if (r != 0)
      return r;
  }
  sub_argc -= optind;
  sub_argv += optind;

  if (force_opt && !sc->takes_force) {
    error_msg ("%s: --force is only for format", sc->name);
    return EXIT_ERROR;
  }
  if (json_opt && !sc->takes_json) {
    error_msg ("%s: --json is only for show and dump", sc->name);
    return EXIT_ERROR;
  }
  if (sub_argc < sc->min_args ||
      (sc->max_args >= 0 && sub_argc > sc->max_args)) {
    error_msg ("%s: %s; usage: remapctl [OPTIONS] %s %s", sc->name,
               sub_argc < sc->min_args ? "missing arguments"
               : "too many arguments", sc->name, sc->args);
    return EXIT_ERROR;
  }
  if (disk_path && nbd_uri) {
    error_msg ("give --disk or --uri, not both");
    return EXIT_ERROR;
  }
  if (!disk_path && !nbd_uri && !spare_path) {
    error_msg ("say where the metadata is: --disk=IMAGE, --uri=NBD-URI or "
               "--spare=FILE (see 'remapctl --help')");
    return EXIT_ERROR;
  }

  r = sc->run (sub_argc, sub_argv);
  close_target (false);
  if (fflush (stdout) == EOF) {
    error_msg ("writing to standard output: %m");
    if (r == EXIT_OK)
      r = EXIT_ERROR;
  }
  return r;
}
