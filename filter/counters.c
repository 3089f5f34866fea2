/* nbdkit-remap: the I/O counters, cheap enough for the fast path.
 *
 * Every request bumps two counters, through one lookup of its slot.
 * With one shared atomic per counter, two connections on two CPUs
 * would bounce the same cache line on every request; instead each
 * thread takes a slot of its own (a cache line apart), writes it
 * without atomic read-modify-write, and readers add the slots up.
 * Threads beyond the slots fall back to the shared atomics.
 *
 * Slots are given back.  nbdkit starts worker threads for each
 * connection and ends them when it closes, so a server whose clients
 * reconnect would otherwise run out of slots after a few connections
 * and put every request on the shared atomics for good.  A thread
 * that takes a slot registers a thread-exit destructor (a pthread
 * key); the destructor, or the thread itself when it moves on to
 * another device, marks the slot free, and the next thread that needs
 * one takes the lowest free slot.  What makes this safe:
 *
 * Counts stay exact without a fold.  A freed slot keeps its counts,
 * and its next owner goes on adding to them; readers add up every
 * slot ever owned ([0, nr_slots)), free or not, plus dev->counters.
 * Moving the counts into dev->counters instead would let a reader
 * running meanwhile see them twice or not at all (a total that goes
 * down breaks Prometheus counters), unless readers took a lock.  The
 * hand-over is ordered by slots_lock: the old owner's last stores
 * happen before the new owner's first.
 *
 * Windows.  A slot's window value only grows, odd while a window is
 * open, and it too is kept for the next owner.  nbdkit ends a thread
 * only between requests, and windows never outlive a request, so a
 * slot given back has no open window (asserted).  A drain scanning
 * meanwhile reads a value that is even, so it does not wait for it,
 * or odd from a window opened by the new owner, which changes when
 * that window closes: never the same odd value again, so it neither
 * waits forever nor confuses two windows.  nr_slots never shrinks,
 * and a thread takes its slot before it opens its first window in it
 * (before the fence of window_open), so a drain that comes after that
 * fence scans the slot.
 *
 * Devices that are freed.  A thread may exit long after the device
 * it counted for is freed (tools and tests open several in turn, and
 * nbdkit's connection threads are detached: the last ones may still
 * be exiting while the filter is unloaded).  The cache in the thread
 * holds the device's id, never used to reach the device directly: the
 * destructor looks the id up in the registry of live devices under
 * slots_lock, and remap_counters_free takes the device out of the
 * registry under the same lock before the device is freed.
 *
 * The destructor's code.  nbdkit 1.32 unloads the filter (dlclose)
 * right after .unload, while a detached connection thread may still
 * be on its way out (server/sockets.c counts it as gone before it
 * returns; worker threads are joined before .finalize).  A pthread key
 * cannot be deleted safely then (the thread may have read the
 * destructor's address already).  Instead, the first time a key is
 * made, the object holding this code is pinned in memory
 * (RTLD_NODELETE): the key and its destructor stay valid until the
 * process exits, which nbdkit does right after unloading.  If the
 * object cannot be pinned, no key is made and slots are never given
 * back, as before.
 */
#include <config.h>

#include <assert.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "device.h"
#include "sector.h"

static_assert (REMAP_COUNTER_SLOTS == 64, "slots_owned is one uint64_t");

static uint64_t next_device_id = 1;

/* The store-load fence of the write windows (Dekker: each side stores,
 * fences, then loads what the other side stored).  ThreadSanitizer
 * does not model fences (GCC warns, -Wtsan), so under it the fence is
 * a sequentially consistent read-modify-write of one shared word,
 * which it does model and which orders the same way.  Production
 * builds keep the plain fence: no shared cache line on the fast path.
 */
#if defined(__SANITIZE_THREAD__)
static uint64_t tsan_fence_word;
#define window_fence() \
  ((void) __atomic_fetch_add (&tsan_fence_word, 0, __ATOMIC_SEQ_CST))
#else
#define window_fence() __atomic_thread_fence (__ATOMIC_SEQ_CST)
#endif

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

/* The registry of live devices and the owners of their slots: taken
 * when a thread first counts for a device and when it exits, never
 * per request.
 */
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static struct remap_device *live_devices;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static bool have_exit_key;

int
remap_counters_init (struct remap_device *dev)
{
  dev->id = __atomic_fetch_add (&next_device_id, 1, __ATOMIC_RELAXED);
  /* Slots are a cache line each: calloc does not align that far. */
  dev->slots = aligned_alloc (64, REMAP_COUNTER_SLOTS * sizeof *dev->slots);
  if (dev->slots == NULL)
    return -1;
  memset (dev->slots, 0, REMAP_COUNTER_SLOTS * sizeof *dev->slots);
  pthread_mutex_lock (&slots_lock);
  dev->live_next = live_devices;
  live_devices = dev;
  pthread_mutex_unlock (&slots_lock);
  return 0;
}

void
remap_counters_free (struct remap_device *dev)
{
  pthread_mutex_lock (&slots_lock);
  for (struct remap_device **p = &live_devices; *p; p = &(*p)->live_next)
    if (*p == dev) {
      *p = dev->live_next;
      break;
    }
  pthread_mutex_unlock (&slots_lock);
  free (dev->slots);
  dev->slots = NULL;
}

void
remap_counters_slot_stats (struct remap_device *dev, unsigned *owned,
                           uint64_t *threads_unslotted)
{
  pthread_mutex_lock (&slots_lock);
  *owned = __builtin_popcountll (dev->slots_owned);
  *threads_unslotted = dev->threads_unslotted;
  pthread_mutex_unlock (&slots_lock);
}

/* Gives this thread's slot back, if its device still lives.  Caller
 * holds slots_lock.
 */
static void
give_back_locked (void)
{
  struct remap_device *dev = live_devices;

  while (dev && dev->id != cached_id)
    dev = dev->live_next;
  if (dev && cached_slot) {
    /* Only between requests: no window of ours is open. */
    assert ((cached_slot->window[REMAP_WINDOW_WRITE] & 1) == 0);
    assert ((cached_slot->window[REMAP_WINDOW_WALK] & 1) == 0);
    dev->slots_owned &= ~(UINT64_C (1) << (cached_slot - dev->slots));
  }
  cached_id = 0;
  cached_slot = NULL;
}

static void
thread_exit (void *unused)
{
  (void) unused;
  pthread_mutex_lock (&slots_lock);
  give_back_locked ();
  pthread_mutex_unlock (&slots_lock);
}

/* Keeps the object holding thread_exit loaded until the process
 * exits (see the top of the file).  The main program is never
 * unloaded; a shared object is pinned with RTLD_NODELETE.
 */
static bool
pin_this_object (void)
{
  Dl_info self, prog;

  if (dladdr ((void *) thread_exit, &self) == 0)
    return false;
  if (dladdr ((void *) getauxval (AT_PHDR), &prog) != 0 &&
      prog.dli_fbase == self.dli_fbase)
    return true;
  /* Not closed: this reference is what keeps the object. */
  return dlopen (self.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE)
    != NULL;
}

static void
make_exit_key (void)
{
  if (!pin_this_object ())
    nbdkit_debug ("remap: cannot pin the filter in memory: counter slots "
                  "are not given back when threads exit");
  else
    have_exit_key = pthread_key_create (&exit_key, thread_exit) == 0;
}

/* First count of this thread for dev: gives back the slot it had for
 * another device and takes the lowest free one, if any.
 */
static void __attribute__ ((noinline, cold))
take_slot (struct remap_device *dev)
{
  uint64_t free_slots;

  pthread_once (&key_once, make_exit_key);
  pthread_mutex_lock (&slots_lock);
  give_back_locked ();
  cached_id = dev->id;
  free_slots = ~dev->slots_owned;
  if (free_slots) {
    unsigned i = __builtin_ctzll (free_slots);
    dev->slots_owned |= UINT64_C (1) << i;
    if (i >= dev->nr_slots)
      __atomic_store_n (&dev->nr_slots, i + 1, __ATOMIC_RELAXED);
    cached_slot = &dev->slots[i];
  }
  else
    dev->threads_unslotted++;
  pthread_mutex_unlock (&slots_lock);
  /* A thread with no slot stays on the shared atomics: no key value,
   * no destructor.  If the value cannot be set, the slot is not given
   * back at exit (a slot lost, not a count).
   */
  if (cached_slot && have_exit_key)
    pthread_setspecific (exit_key, cached_slot);
}

/* This thread's slot, or NULL if every slot was owned when it came. */
static inline struct remap_counter_slot *
thread_slot (struct remap_device *dev)
{
  if (cached_id != dev->id)
    take_slot (dev);
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

  /* Free slots too: they keep the counts of the threads that left. */
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
  if (slot) {
    __atomic_store_n (&slot->window[kind], slot->window[kind] + 1,
                      __ATOMIC_RELAXED);
    /* Pairs with the first fence in remap_windows_drain: either what
     * the thread looks at next shows the change, or the drain sees
     * the window.
     */
    window_fence ();
    return;
  }
  /* Shared by threads beyond the slots: counted in one of two
   * counters, the one the drains do not wait for at the moment.  The
   * side is looked at again once counted: if drains flipped it
   * meanwhile, the next one would wait for the other counter only, so
   * count again.  If it did not change, a drain that flips it later
   * sees this count (the fence pairs with the one after its flip),
   * and one that flipped it before made its change visible to us
   * (acquire) first.
   */
  for (;;) {
    *side = __atomic_load_n (&dev->windows_side[kind], __ATOMIC_ACQUIRE);
    __atomic_fetch_add (&dev->windows_unslotted[kind][*side], 1,
                        __ATOMIC_RELAXED);
    window_fence ();
    if (__atomic_load_n (&dev->windows_side[kind], __ATOMIC_ACQUIRE) == *side)
      return;
    __atomic_fetch_sub (&dev->windows_unslotted[kind][*side], 1,
                        __ATOMIC_RELEASE);
  }
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
  window_fence ();
  used = __atomic_load_n (&dev->nr_slots, __ATOMIC_RELAXED);
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
  window_fence ();
  while (__atomic_load_n (&dev->windows_unslotted[kind][side],
                          __ATOMIC_ACQUIRE))
    nap ();
  pthread_mutex_unlock (&dev->drain_lock[kind]);
}
