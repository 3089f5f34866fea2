/* nbdkit-remap: CRC-32C (Castagnoli) in software, slicing by 8.
 *
 * A metadata copy of a large table is checksummed on every sync, so
 * the byte-at-a-time loop is too slow; slicing by 8 is portable and
 * fast enough that the checksum never dominates a sync.
 */
#include <config.h>

#include <pthread.h>
#include <string.h>

#include "crc32c.h"

#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t crc_table[8][256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void
crc_table_init (void)
{
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
    crc_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      crc_table[t][i] = (crc_table[t-1][i] >> 8) ^
        crc_table[0][crc_table[t-1][i] & 0xff];
}

uint32_t
crc32c_update (uint32_t crc, const void *buf, size_t len)
{
  const unsigned char *p = buf;

  pthread_once (&crc_table_once, crc_table_init);
  crc = ~crc;
  while (len >= 8) {
    uint32_t lo, hi;
    /* Assemble little-endian words byte by byte so that the result
     * does not depend on host byte order or alignment.
     */
    lo = (uint32_t) p[0] | (uint32_t) p[1] << 8 |
      (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
    hi = (uint32_t) p[4] | (uint32_t) p[5] << 8 |
      (uint32_t) p[6] << 16 | (uint32_t) p[7] << 24;
    lo ^= crc;
    crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
      crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
      crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
    p += 8;
    len -= 8;
  }
  while (len--)
    crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
  return ~crc;
}
