/* nbdkit-remap unit tests: an external-mode device over two memdisks
 * (see extdev.h).
 */
#include <config.h>

#include <string.h>

#include <check.h>

#include "extdev.h"
#include "format.h"
#include "stubs.h"

void
extdev_open (struct extdev *x)
{
  struct remap_geometry g;
  char why[256];

  memset (x, 0, sizeof *x);
  stub_reset ();
  x->disk = memdisk_new (EXTDEV_DISK_SIZE, EXTDEV_SS);
  ck_assert_ptr_nonnull (x->disk);
  remap_options_init (&x->opt);
  x->opt.sector_size = EXTDEV_SS;
  x->opt.spare_bytes = EXTDEV_SPARES * EXTDEV_SS;
  x->opt.store_name = "spare.img";
  ck_assert_int_eq (remap_geometry_compute (&g, false, EXTDEV_DISK_SIZE,
                                            EXTDEV_SS, EXTDEV_SPARES,
                                            why, sizeof why), 0);
  x->store = memdisk_new (g.region_size, EXTDEV_SS);
  ck_assert_ptr_nonnull (x->store);
  x->dev = remap_device_open (&x->opt, &x->store->io, x->store->size,
                              x->disk->size);
  ck_assert_msg (x->dev != NULL, "open failed: %s", stub_last_error);
}

void
extdev_free (struct extdev *x)
{
  remap_device_stop (x->dev);
  remap_device_free (x->dev);
  memdisk_free (x->disk);
  memdisk_free (x->store);
}

int
extdev_write_sector (struct extdev *x, uint64_t sector, unsigned char byte,
                     uint32_t flags, int *err)
{
  unsigned char buf[EXTDEV_SS];

  memset (buf, byte, sizeof buf);
  return remap_device_pwrite (x->dev, &x->disk->io, buf, sizeof buf,
                              sector * EXTDEV_SS, flags, err);
}
