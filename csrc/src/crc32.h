/* zlib's CRC-32, which protects a .bfsm payload. */
#ifndef BIFSMN_CRC32_H
#define BIFSMN_CRC32_H

#include <stddef.h>
#include <stdint.h>

uint32_t bifsmn_crc32(const uint8_t *data, size_t n);

#endif
