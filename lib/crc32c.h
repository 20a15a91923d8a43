/*
 * CRC32C (Castagnoli) for on-disk checksums.
 *
 * The durable logs checksum every record and file header with CRC32C, the
 * polynomial with hardware support on x86 (SSE4.2) and arm64. This module
 * keeps lib/ free of DPDK: it uses the CPU instruction when the CPU has it
 * and a table otherwise, and both give the same bits, so a log written on
 * one machine verifies on any other.
 */
#ifndef QD_CRC32C_H
#define QD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The value a new checksum starts from; pass it as <crc> for the first chunk. */
#define QD_CRC32C_INIT 0u

/*
 * Extend the CRC32C <crc> (QD_CRC32C_INIT for a new checksum, or the result
 * of an earlier call) over <len> bytes at <buf>. Chaining calls over the
 * pieces of a buffer gives the checksum of the whole: the usual reflected
 * CRC32C with initial value and final xor 0xffffffff, so
 * qd_crc32c(0, "123456789", 9) == 0xe3069283.
 */
uint32_t qd_crc32c(uint32_t crc, const void *buf, size_t len);

/* The same function computed by the table alone, whatever the CPU: for tests. */
uint32_t qd_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif /* QD_CRC32C_H */
