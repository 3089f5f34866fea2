/* nbdkit-remap: the I/O counters, cheap enough for the fast path.
 *
 * Every request bumps two counters.  With one shared atomic per
 * counter, two connections on two CPUs would bounce the same cache
 * line on every request; instead each thread takes a slot of its own
 * (a cache line apart), writes it without atomic read-modify-write,
 * and readers add the slots up.  Threads beyond the slots fall back to
 * the shared atomics.
 */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "device.h"

static uint64_t next_device_id = 1;

/* The slot this thread took, and for which device: devices come and
 * go (tools, tests), so the cache is keyed by a device id, never by
 * an address that may be reused.
 */
static __thread uint64_t cached_id;
static __thread struct remap_counter_slot *cached_slot;

int
remap_counters_init (struct remap_device *dev)
{
  dev->id = __atomic_fetch_add (&next_device_id, 1, __ATOMIC_RELAXED);
  /* Slots are a cache line each: calloc does not align that far. */
  dev->slots = aligned_alloc (64, REMAP_COUNTER_SLOTS * sizeof *dev->slots);
  if (dev->slots == NULL)
    return -1;
  memset (dev->slots, 0, REMAP_COUNTER_SLOTS * sizeof *dev->slots);
  return 0;
}

void
remap_counter_add (struct remap_device *dev, enum remap_counter c,
                   uint64_t n)
{
  struct remap_counter_slot *slot;

  if (cached_id != dev->id) {
    unsigned i = __atomic_fetch_add (&dev->nr_slots, 1, __ATOMIC_RELAXED);
    cached_id = dev->id;
    cached_slot = i < REMAP_COUNTER_SLOTS ? &dev->slots[i] : NULL;
  }
  slot = cached_slot;
  if (slot == NULL) {
    __atomic_fetch_add (&dev->counters[c], n, __ATOMIC_RELAXED);
    return;
  }
  /* Only this thread writes the slot: a plain add, published with a
   * relaxed store so that readers never see a torn value.
   */
  __atomic_store_n (&slot->v[c],
                    __atomic_load_n (&slot->v[c], __ATOMIC_RELAXED) + n,
                    __ATOMIC_RELAXED);
}

uint64_t
remap_device_counter (struct remap_device *dev, enum remap_counter c)
{
  uint64_t sum = __atomic_load_n (&dev->counters[c], __ATOMIC_RELAXED);
  unsigned used = __atomic_load_n (&dev->nr_slots, __ATOMIC_RELAXED);

  if (used > REMAP_COUNTER_SLOTS)
    used = REMAP_COUNTER_SLOTS;
  for (unsigned i = 0; i < used; i++)
    sum += __atomic_load_n (&dev->slots[i].v[c], __ATOMIC_RELAXED);
  return sum;
}
