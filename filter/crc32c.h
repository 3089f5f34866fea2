/* nbdkit-remap: CRC-32C (Castagnoli), the checksum that guards every
 * metadata copy.
 */
#ifndef REMAP_CRC32C_H
#define REMAP_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC over more data: start with crc = 0. */
extern uint32_t crc32c_update (uint32_t crc, const void *buf, size_t len);

#endif /* REMAP_CRC32C_H */
