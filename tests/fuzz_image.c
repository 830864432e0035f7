/* libFuzzer target for image decoding: JPEG/PNG/BMP bytes through tern_image_decode (signature
 * check, truncation check, header size limits, stb_image compiled in with ASan/UBSan, and the
 * darknet resize/crop), with and without preprocessing. Any input gives pixels of the size the
 * preprocessing promises, or a clean error naming the image. */
#include "data/data.h"
#include <string.h>

static void one(const uint8_t *d, size_t n, const tern_preproc *pp) {
    uint8_t *chw = NULL;
    int h = 0, w = 0;
    enum tern_status st = tern_image_decode(d, n, "fuzz.img", pp, &chw, &h, &w);
    if (st == TERN_STATUS_OK) {
        if (!chw || h <= 0 || w <= 0 || (int64_t)h * w > TERN_IMAGE_MAX_PIXELS) __builtin_trap();
        if (pp && pp->crop_h && (h != pp->crop_h || w != pp->crop_w)) __builtin_trap();
        volatile uint8_t sum = 0;
        for (size_t i = 0; i < (size_t)3 * h * w; i++) sum += chw[i]; /* every byte written (MSan-free check: read) */
    } else if (chw || !strstr(tern_last_error(), "fuzz.img")) {
        __builtin_trap();
    }
    free(chw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const tern_preproc crop = {.resize_short = 40, .crop_h = 32, .crop_w = 32};
    static const tern_preproc bgr = {.bgr = 1};
    one(data, size, NULL);
    one(data, size, &crop);
    one(data, size, &bgr);
    return 0;
}
