/* nbdkit-remap: the remap-* parameters (see params.h).  Every bad
 * value is refused here, with a message naming the parameter, before
 * the disk is opened.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "params.h"

struct remap_params params;

void
remap_params_init (void)
{
  remap_options_init (&params.options);
  params.plugin_cache = true;
}

void
remap_params_free (void)
{
  remap_ranges_free (&params.add_ranges);
  remap_ranges_free (&params.ddrescue_bytes);
  free (params.ddrescue_path);
  free (params.spare_path);
  free (params.control_path);
  free (params.metrics_path);
  for (size_t i = 0; i < params.nr_plugin_files; i++)
    free (params.plugin_files[i]);
  free (params.plugin_files);
  free (params.plugin_key);
}

/* Notes a parameter that goes to the plugin: the store lock is named
 * after all of them, or taken on the file of file=PATH.  A file= that
 * does not resolve is left to the plugin to complain about.
 */
static int
note_plugin_param (const char *key, const char *value)
{
  size_t old = params.plugin_key ? strlen (params.plugin_key) : 0;
  char *k = realloc (params.plugin_key,
                     old + strlen (key) + strlen (value) + 3);

  if (k == NULL) {
    nbdkit_error ("realloc: %m");
    return -1;
  }
  sprintf (k + old, "%s=%s\n", key, value);
  params.plugin_key = k;
  if (strcmp (key, "file") == 0) {
    char *path = realpath (value, NULL);
    char **v;
    if (path == NULL)
      return 0;
    v = realloc (params.plugin_files,
                 (params.nr_plugin_files + 1) * sizeof *v);
    if (v == NULL) {
      nbdkit_error ("realloc: %m");
      free (path);
      return -1;
    }
    v[params.nr_plugin_files++] = path;
    params.plugin_files = v;
  }
  return 0;
}

/* remap-warn=75%,90%: ascending percentages, or "none". */
static int
parse_warn (const char *value)
{
  CLEANUP_FREE char *copy = strdup (value);
  char *item, *save = NULL;

  if (copy == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  params.options.nr_warn = 0;
  if (strcmp (value, "none") == 0)
    return 0;
  for (item = strtok_r (copy, ",", &save); item;
       item = strtok_r (NULL, ",", &save)) {
    uint32_t *slot = &params.options.warn_x100[params.options.nr_warn];
    if (params.options.nr_warn >= REMAP_MAX_WARN ||
        remap_parse_percent (item, slot, 10000) == -1 ||
        (params.options.nr_warn > 0 && *slot <= slot[-1])) {
      nbdkit_error ("remap-warn=%s: give up to %d ascending percentages "
                    "of the spare pool, like 75%%,90%%, or none",
                    value, REMAP_MAX_WARN);
      return -1;
    }
    params.options.nr_warn++;
  }
  if (params.options.nr_warn == 0) {
    nbdkit_error ("remap-warn=%s: no percentage given (use none to turn "
                  "the warnings off)", value);
    return -1;
  }
  return 0;
}

/* A file name parameter, made absolute (nbdkit changes directory when
 * it forks).
 */
static int
config_path (const char *key, const char *value, char **path)
{
  free (*path);
  *path = NULL;
  if (*value == '\0') {
    nbdkit_error ("%s: the file name is empty", key);
    return -1;
  }
  *path = nbdkit_absolute_path (value);
  return *path ? 0 : -1;
}

static int
parse_add_file (const char *value)
{
  CLEANUP_FREE char *path = NULL;
  FILE *fp;
  char why[512];
  int r;

  if (config_path ("remap-add-file", value, &path) == -1)
    return -1;
  fp = fopen (path, "r");
  if (fp == NULL) {
    nbdkit_error ("remap-add-file: cannot open %s: %m", path);
    return -1;
  }
  r = remap_ranges_parse_file (fp, &params.add_ranges, why, sizeof why);
  fclose (fp);
  if (r == -1)
    nbdkit_error ("remap-add-file: %s: %s", path, why);
  return r;
}

static int
parse_u32_param (const char *key, const char *value, uint32_t *out)
{
  return nbdkit_parse_uint32_t (key, value, out);
}

/* nbdkit's parsers say what is wrong but not with which parameter. */
static int
parse_size_param (const char *key, const char *value, int64_t *out)
{
  *out = nbdkit_parse_size (value);
  if (*out == -1) {
    nbdkit_error ("%s=%s: not a size (like 4096, 64k or 1M)", key, value);
    return -1;
  }
  return 0;
}

static int
parse_bool_param (const char *key, const char *value, bool *out)
{
  int r = nbdkit_parse_bool (value);

  if (r == -1) {
    nbdkit_error ("%s=%s: use yes or no", key, value);
    return -1;
  }
  *out = r;
  return 0;
}

int
remap_params_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
              const char *key, const char *value)
{
  if (strcmp (key, "remap-spare") == 0)
    return config_path (key, value, &params.spare_path);
  if (strcmp (key, "remap-spare-size") == 0) {
    params.options.spare_bytes = 0;
    params.options.spare_percent_x100 = 0;
    if (strchr (value, '%')) {
      if (remap_parse_percent (value, &params.options.spare_percent_x100,
                               5000) == -1) {
        nbdkit_error ("remap-spare-size=%s: a percentage must be more than "
                      "0%% and at most 50%% of the disk, with at most two "
                      "decimals (like 1%% or 0.25%%)", value);
        return -1;
      }
      return 0;
    }
    int64_t r;
    if (parse_size_param (key, value, &r) == -1)
      return -1;
    if (r == 0) {
      nbdkit_error ("remap-spare-size=%s: the spare area cannot be empty",
                    value);
      return -1;
    }
    params.options.spare_bytes = r;
    return 0;
  }
  if (strcmp (key, "remap-sector-size") == 0) {
    int64_t r;
    if (parse_size_param (key, value, &r) == -1)
      return -1;
    if (r < REMAP_MIN_SECTOR_SIZE || r > REMAP_MAX_SECTOR_SIZE ||
        (r & (r - 1)) != 0) {
      nbdkit_error ("remap-sector-size=%s: must be a power of two from %d "
                    "to %d bytes", value, REMAP_MIN_SECTOR_SIZE,
                    REMAP_MAX_SECTOR_SIZE);
      return -1;
    }
    params.options.sector_size = r;
    return 0;
  }
  if (strcmp (key, "remap-format") == 0)
    return parse_bool_param (key, value, &params.options.format);
  if (strcmp (key, "remap-read-retries") == 0) {
    if (parse_u32_param (key, value, &params.options.read_retries) == -1)
      return -1;
    if (params.options.read_retries > 100) {
      nbdkit_error ("remap-read-retries=%s: at most 100", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "remap-verify") == 0)
    return parse_bool_param (key, value, &params.options.verify);
  if (strcmp (key, "remap-write-through") == 0)
    return parse_bool_param (key, value, &params.write_through);
  if (strcmp (key, "remap-plugin-cache") == 0)
    return parse_bool_param (key, value, &params.plugin_cache);
  if (strcmp (key, "remap-pending-partial") == 0) {
    if (strcmp (value, "zero") == 0)
      params.options.pending_partial_zero = true;
    else if (strcmp (value, "fail") == 0)
      params.options.pending_partial_zero = false;
    else {
      nbdkit_error ("remap-pending-partial=%s: use fail or zero", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "remap-warn") == 0)
    return parse_warn (value);
  if (strcmp (key, "remap-storm-limit") == 0)
    return parse_u32_param (key, value, &params.options.storm_limit);
  if (strcmp (key, "remap-add") == 0) {
    char why[512];
    if (remap_ranges_parse_list (value, &params.add_ranges, why, sizeof why) == -1) {
      nbdkit_error ("remap-add=%s: %s (give sectors like 5,7-9)", value, why);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "remap-add-file") == 0)
    return parse_add_file (value);
  if (strcmp (key, "remap-control") == 0)
    return config_path (key, value, &params.control_path);
  if (strcmp (key, "remap-metrics-file") == 0)
    return config_path (key, value, &params.metrics_path);
  if (strcmp (key, "remap-ddrescue") == 0)
    return config_path (key, value, &params.ddrescue_path);
  if (strncmp (key, "remap-", 6) == 0) {
    nbdkit_error ("unknown parameter %s; see nbdkit-remap-filter(1) for the "
                  "remap- parameters", key);
    return -1;
  }
  if (note_plugin_param (key, value) == -1)
    return -1;
  return next (nxdata, key, value);
}

int
remap_params_complete (nbdkit_next_config_complete *next,
                       nbdkit_backend *nxdata)
{
  params.options.internal = params.spare_path == NULL;
  params.options.store_name = params.spare_path ? params.spare_path : "the disk";
  /* Read the mapfile now, so that a bad one stops the server before
   * it forks, with the message on the terminal.  Its areas are kept in
   * bytes until the sector size is known.
   */
  if (params.ddrescue_path) {
    FILE *fp = fopen (params.ddrescue_path, "r");
    char why[512];
    int r;
    if (fp == NULL) {
      nbdkit_error ("remap-ddrescue: cannot open %s: %m", params.ddrescue_path);
      return -1;
    }
    r = remap_ddrescue_parse (fp, 1, &params.ddrescue_bytes, why, sizeof why);
    fclose (fp);
    if (r == -1) {
      nbdkit_error ("remap-ddrescue: %s: %s", params.ddrescue_path, why);
      return -1;
    }
  }
  return next (nxdata);
}
