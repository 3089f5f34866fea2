/* nbdkit-remap: health warnings, the way an operator needs them: each
 * spare-pool threshold is logged once when crossed, exhaustion once,
 * and a burst of new bad sectors (a disk failing fast) at most once a
 * minute.
 */
#include <config.h>

#include <inttypes.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "device.h"

#define STORM_WINDOW_SECONDS 60

void
remap_health_check_spares (struct remap_device *dev)
{
  uint64_t total = remap_spares_total (dev->spares);
  uint64_t taken = remap_spares_used (dev->spares) +
    remap_spares_retired (dev->spares);

  pthread_mutex_lock (&dev->health_lock);
  for (unsigned i = 0; i < dev->opt.nr_warn; i++) {
    if ((dev->warned & (1u << i)) == 0 &&
        taken * 10000 >= total * dev->opt.warn_x100[i]) {
      dev->warned |= 1u << i;
      nbdkit_error ("remap: warning: %" PRIu64 " of %" PRIu64 " spare "
                    "sectors are used (%u.%02u%% threshold crossed); the disk "
                    "is wearing out, plan to replace it",
                    taken, total, dev->opt.warn_x100[i] / 100,
                    dev->opt.warn_x100[i] % 100);
    }
  }
  pthread_mutex_unlock (&dev->health_lock);
}

void
remap_health_exhausted (struct remap_device *dev, uint64_t sector)
{
  bool first;

  pthread_mutex_lock (&dev->health_lock);
  first = !dev->exhausted_logged;
  dev->exhausted_logged = true;
  pthread_mutex_unlock (&dev->health_lock);
  if (first)
    nbdkit_error ("remap: the spare pool is exhausted (all %" PRIu32
                  " spares used): writes that need a new spare fail with "
                  "ENOSPC (first: sector %" PRIu64 "); everything already "
                  "remapped keeps working.  Copy the data off this disk",
                  remap_spares_total (dev->spares), sector);
  else
    nbdkit_debug ("remap: no spare left for sector %" PRIu64, sector);
}

void
remap_health_new_bad_sector (struct remap_device *dev, uint64_t sector)
{
  struct timespec now;
  uint64_t count = 0;

  clock_gettime (CLOCK_MONOTONIC, &now);
  pthread_mutex_lock (&dev->health_lock);
  if ((uint64_t) now.tv_sec >= dev->storm_window_start + STORM_WINDOW_SECONDS) {
    dev->storm_window_start = now.tv_sec;
    dev->storm_count = 0;
    dev->storm_logged = false;
  }
  dev->storm_count++;
  if (dev->opt.storm_limit && !dev->storm_logged &&
      dev->storm_count > dev->opt.storm_limit) {
    dev->storm_logged = true;
    count = dev->storm_count;
  }
  pthread_mutex_unlock (&dev->health_lock);
  if (count)
    nbdkit_error ("remap: the disk is failing fast: %" PRIu64 " new bad "
                  "sectors within a minute (latest %" PRIu64 ", limit "
                  "remap-storm-limit=%" PRIu32 "); copy the data off it now",
                  count, sector, dev->opt.storm_limit);
}
