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
#include <time.h>

#include "device.h"
#include "sector.h"

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

/* Windows (sector.h).  The same slot as the counters: opening and
 * closing one costs two stores to a line only this thread writes and
 * one fence, no lock and no shared cache line.
 */
static void
window_open (struct remap_device *dev, struct remap_counter_slot *slot,
             enum remap_window_kind kind, unsigned *side)
{
  if (slot)
    __atomic_store_n (&slot->window[kind], slot->window[kind] + 1,
                      __ATOMIC_RELAXED);
  else {
    /* Shared by threads beyond the slots: counted in one of two
     * counters, the one the drains do not wait for at the moment.
     */
    *side = __atomic_load_n (&dev->windows_side[kind], __ATOMIC_RELAXED);
    __atomic_fetch_add (&dev->windows_unslotted[kind][*side], 1,
                        __ATOMIC_RELAXED);
  }
  /* Pairs with the fence in remap_windows_drain: either what the
   * thread looks at next shows the change, or the drain sees the
   * window.
   */
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
}

struct remap_counter_slot *
remap_window_open (struct remap_device *dev, enum remap_window_kind kind,
                   unsigned *side)
{
  struct remap_counter_slot *slot = thread_slot (dev);

  window_open (dev, slot, kind, side);
  return slot;
}

struct remap_counter_slot *
remap_count_write_open (struct remap_device *dev, uint64_t n,
                        unsigned *side)
{
  struct remap_counter_slot *slot = thread_slot (dev);

  slot_add (dev, slot, REMAP_COUNTER_WRITES, 1);
  slot_add (dev, slot, REMAP_COUNTER_BYTES_WRITTEN, n);
  window_open (dev, slot, REMAP_WINDOW_WRITE, side);
  return slot;
}

static void
nap (void)
{
  const struct timespec ts = { .tv_nsec = 50000 };
  nanosleep (&ts, NULL);
}

void
remap_windows_drain (struct remap_device *dev, enum remap_window_kind kind)
{
  unsigned used, side;

  if (kind == REMAP_WINDOW_WRITE && remap_debug_selftest_bug == 4) return;
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
  used = __atomic_load_n (&dev->nr_slots, __ATOMIC_RELAXED);
  if (used > REMAP_COUNTER_SLOTS)
    used = REMAP_COUNTER_SLOTS;
  /* A slot's window that is open now closes by changing its value;
   * a window opened after the fence sees the change, so the one seen
   * here is all there is to wait for: new windows never delay us.
   */
  for (unsigned i = 0; i < used; i++) {
    uint64_t *w = &dev->slots[i].window[kind];
    uint64_t seen = __atomic_load_n (w, __ATOMIC_ACQUIRE);
    if (seen & 1)
      while (__atomic_load_n (w, __ATOMIC_ACQUIRE) == seen)
        nap ();
  }
  /* The shared counters: new windows go to the other side while we
   * wait for this one to empty, so they cannot starve us either.  One
   * drain of a kind at a time, or two could keep swapping sides.
   */
  pthread_mutex_lock (&dev->drain_lock[kind]);
  side = __atomic_load_n (&dev->windows_side[kind], __ATOMIC_RELAXED);
  __atomic_store_n (&dev->windows_side[kind], side ^ 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n (&dev->windows_unslotted[kind][side],
                          __ATOMIC_ACQUIRE))
    nap ();
  pthread_mutex_unlock (&dev->drain_lock[kind]);
}
