/* nbdkit-remap: the I/O counters, cheap enough for the fast path.
 *
 * Every request bumps two counters, through one lookup of its slot.  With one shared atomic per
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

/* Initial-exec TLS: a fixed offset from the thread pointer instead of
 * a call to __tls_get_addr on every request.  The filter is dlopen'd,
 * which glibc allows for a few bytes of such TLS (it keeps surplus
 * static TLS for this).
 */
#define TLS_FAST __attribute__ ((tls_model ("initial-exec")))

/* The slot this thread took, and for which device: devices come and
 * go (tools, tests), so the cache is keyed by a device id, never by
 * an address that may be reused.
 */
static __thread uint64_t cached_id TLS_FAST;
static __thread struct remap_counter_slot *cached_slot TLS_FAST;

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

/* This thread's slot, or NULL once every slot is taken. */
static struct remap_counter_slot *
thread_slot (struct remap_device *dev)
{
  if (cached_id != dev->id) {
    unsigned i = __atomic_fetch_add (&dev->nr_slots, 1, __ATOMIC_RELAXED);
    cached_id = dev->id;
    cached_slot = i < REMAP_COUNTER_SLOTS ? &dev->slots[i] : NULL;
  }
  return cached_slot;
}

static void
slot_add (struct remap_device *dev, struct remap_counter_slot *slot,
          enum remap_counter c, uint64_t n)
{
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

void
remap_counter_add (struct remap_device *dev, enum remap_counter c,
                   uint64_t n)
{
  slot_add (dev, thread_slot (dev), c, n);
}

void
remap_count_request (struct remap_device *dev, enum remap_counter requests,
                     enum remap_counter bytes, uint64_t n)
{
  struct remap_counter_slot *slot = thread_slot (dev);

  slot_add (dev, slot, requests, 1);
  slot_add (dev, slot, bytes, n);
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
