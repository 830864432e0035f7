/* libFuzzer target for the .tern reader: any bytes must give either a valid model or a clean
 * TERN_STATUS_FORMAT with a message, never a crash, an out-of-bounds read, UB or a leak.
 *
 * Random mutations almost never keep four CRC-32s right, so on its own the fuzzer would only
 * test the checksum checks. Each input is therefore read twice: as it is, and as a copy whose
 * checksums were recomputed (where the header and section table let us find them), which lets
 * the mutations reach the structural and semantic validation behind the checksums. */
#include "format/tern_format.h"
#include <string.h>

static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }

static void fix_checksums(uint8_t *d, size_t len) {
    if (len < TERN_HDR_SIZE) return;
    const uint64_t n = rd32(d + TERN_HDR_NSECTIONS);
    if (n <= TERN_MAX_SECTIONS && TERN_HDR_SIZE + n * TERN_SEC_SIZE <= len) {
        for (uint64_t i = 0; i < n; i++) {
            uint8_t *e = d + TERN_HDR_SIZE + i * TERN_SEC_SIZE;
            const uint64_t off = rd64(e + TERN_SEC_OFFSET), l = rd64(e + TERN_SEC_LENGTH);
            if (off <= len && l <= len - off) wr32(e + TERN_SEC_CRC, tern_crc32(d + off, (size_t)l));
        }
        wr32(d + TERN_HDR_TABLE_CRC, tern_crc32(d + TERN_HDR_SIZE, (size_t)n * TERN_SEC_SIZE));
    }
    wr32(d + TERN_HDR_CRC, tern_crc32(d, TERN_HDR_CRC));
}

static void load(const uint8_t *d, size_t len) {
    tern_qmodel *m = NULL;
    enum tern_status st = tern_qmodel_load_mem(d, len, "fuzz.tern", &m);
    if (st == TERN_STATUS_OK) {
        /* what the reader accepts must pass the in-memory check too */
        if (!m || tern_qmodel_validate(m, "fuzz.tern") != TERN_STATUS_OK) __builtin_trap();
    } else if (m || !tern_last_error()[0] || !strstr(tern_last_error(), "fuzz.tern")) {
        __builtin_trap();   /* a failure must leave no model and say where */
    }
    tern_qmodel_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load(data, size);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    fix_checksums(copy, size);
    load(copy, size);
    free(copy);
    return 0;
}
