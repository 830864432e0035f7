/* Deterministic PRNG (splitmix64) and training-time augmentation (data.h). */
#include "data/data.h"

uint64_t tern_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint32_t tern_rng_below(uint64_t *s, uint32_t n) {
    return (uint32_t)(((tern_rng_next(s) >> 32) * (uint64_t)n) >> 32);
}

void tern_augment(const uint8_t *chw, int c, int h, int w, int pad, int flip, uint64_t *rng, const float *mean,
                  const float *std, float *out) {
    int dy = pad > 0 ? (int)tern_rng_below(rng, (uint32_t)(2 * pad + 1)) - pad : 0;
    int dx = pad > 0 ? (int)tern_rng_below(rng, (uint32_t)(2 * pad + 1)) - pad : 0;
    int fl = flip ? (int)tern_rng_below(rng, 2) : 0;
    for (int ch = 0; ch < c; ch++) {
        float mu = ch < 3 ? mean[ch] : 0, inv = ch < 3 ? 1.0f / std[ch] : 1.0f;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int sy = y + dy, sx = (fl ? w - 1 - x : x) + dx;
                float p = sy >= 0 && sy < h && sx >= 0 && sx < w ? chw[((size_t)ch * h + sy) * w + sx] : 0;
                out[((size_t)ch * h + y) * w + x] = (p / 255.0f - mu) * inv;
            }
    }
}
