/* Image decoding (stb_image) and the preprocessing that turns a decoded image into network input:
 * darknet resize of the shorter side, centre crop, rounding to uint8, HWC -> planar CHW, RGB/BGR.
 * The resize is the reference one of ../shared/data/README.md section 3 (darknet's
 * resize_image(): bilinear, corners aligned, no antialiasing, x pass then y pass, float32). */
#include "data/data.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#ifdef TERN_FUZZ_STB_SOURCE /* the fuzz target compiles stb_image here, instrumented, with the formats tern reads */
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#endif
#include <stb_image.h>

/* TERN_IMAGE_MAX_SIDE (data.h) also bounds preprocessed images: larger ones only come from absurd
 * aspect ratios (resize of a 1-pixel-wide strip) and would ask for gigabytes. */

enum tern_status tern_preproc_dims(const tern_preproc *pp, const char *what, int h, int w,
                                   int *rh, int *rw, int *oh, int *ow) {
    int64_t th = h, tw = w;
    if (h <= 0 || w <= 0) return tern_errorf(TERN_STATUS_SHAPE, "%s: empty image (%dx%d)", what, w, h);
    if (pp && pp->resize_short > 0) {
        int64_t s = pp->resize_short;
        if (w < h) { tw = s; th = (int64_t)h * s / w; }
        else       { th = s; tw = (int64_t)w * s / h; }
        if (th < 1 || tw < 1 || th > TERN_IMAGE_MAX_SIDE || tw > TERN_IMAGE_MAX_SIDE)
            return tern_errorf(TERN_STATUS_UNSUPPORTED,
                               "%s: resizing %dx%d (WxH) to shorter side %d gives %lldx%lld, too large",
                               what, w, h, pp->resize_short, (long long)tw, (long long)th);
    }
    int64_t ch = th, cw = tw;
    if (pp && pp->crop_h > 0) ch = pp->crop_h;
    if (pp && pp->crop_w > 0) cw = pp->crop_w;
    if (ch > th || cw > tw)
        return tern_errorf(TERN_STATUS_SHAPE, "%s: cannot centre-crop %lldx%lld (WxH) from a %lldx%lld image%s",
                           what, (long long)cw, (long long)ch, (long long)tw, (long long)th,
                           pp && pp->resize_short > 0 ? " (after resize)" : "");
    if (rh) *rh = (int)th;
    if (rw) *rw = (int)tw;
    if (oh) *oh = (int)ch;
    if (ow) *ow = (int)cw;
    return TERN_STATUS_OK;
}

/* Position of output index i (of n) in an input of m samples, corners aligned: the float32
 * nearest to i*(m-1)/(n-1). The README writes the ratio this way; darknet's own code computes
 * i*((float)(m-1)/(n-1)), which can land just below m-1 for the last index (256 -> 224 does) and
 * then darkens darknet's last row (see the y pass). Inputs are exact integers < 2^53 in double. */
static float src_pos(int i, int n, int m) {
    if (n <= 1) return 0.0f;
    return (float)((double)i * (double)(m - 1) / (double)(n - 1));
}

static uint8_t round_u8(float v) {
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v >= 255.0f) return 255;
    return (uint8_t)lrintf(v);
}

enum tern_status tern_preproc_apply(const tern_preproc *pp, const char *what, const uint8_t *in,
                                    int h, int w, size_t cs, size_t ys, size_t xs, uint8_t *out,
                                    int oh, int ow) {
    int rh, rw, ch, cw;
    enum tern_status st = tern_preproc_dims(pp, what, h, w, &rh, &rw, &ch, &cw);
    if (st) return st;
    if (ch != oh || cw != ow)
        return tern_errorf(TERN_STATUS_INTERNAL, "%s: preprocessing gives %dx%d, caller expects %dx%d",
                           what, cw, ch, ow, oh);
    const int bgr = pp && pp->bgr;
    /* Centre crop offsets in the resized image (integer division, README step 4). */
    const int x0 = (rw - cw) / 2, y0 = (rh - ch) / 2;

    if (rh == h && rw == w) {
        /* No resampling (no resize asked, or the image already has the target size: the
         * formula is the identity then). Just crop and reorder channels. */
        for (int c = 0; c < 3; c++) {
            const uint8_t *src = in + (size_t)(bgr ? 2 - c : c) * cs;
            uint8_t *dst = out + (size_t)c * ch * cw;
            for (int y = 0; y < ch; y++)
                for (int x = 0; x < cw; x++)
                    dst[(size_t)y * cw + x] = src[(size_t)(y + y0) * ys + (size_t)(x + x0) * xs];
        }
        return TERN_STATUS_OK;
    }

    /* Only the columns and rows that survive the crop are computed; each output value depends
     * only on its own (ix, dx) and (iy, dy), so this gives the same numbers as resizing the
     * whole image and cropping afterwards. */
    int *ix = tern_malloc(sizeof(int) * (size_t)cw);
    float *dx = tern_malloc(sizeof(float) * (size_t)cw);
    float *tmp = tern_malloc(sizeof(float) * (size_t)h * cw); /* [h][cw] x-resampled rows */
    if (!ix || !dx || !tmp) {
        free(ix); free(dx); free(tmp);
        return TERN_STATUS_NOMEM;
    }
    for (int j = 0; j < cw; j++) {
        int c = x0 + j;
        if (c == rw - 1 || w == 1) { ix[j] = -1; dx[j] = 0.0f; continue; } /* take in[y][w-1] */
        float sx = src_pos(c, rw, w);
        ix[j] = (int)sx;
        dx[j] = sx - (float)ix[j];
        if (ix[j] > w - 2) { ix[j] = -1; dx[j] = 0.0f; } /* cannot happen for sizes we accept */
    }
    for (int c = 0; c < 3; c++) {
        const uint8_t *src = in + (size_t)(bgr ? 2 - c : c) * cs;
        uint8_t *dst = out + (size_t)c * ch * cw;
        for (int y = 0; y < h; y++) {
            const uint8_t *row = src + (size_t)y * ys;
            float *t = tmp + (size_t)y * cw;
            for (int j = 0; j < cw; j++) {
                if (ix[j] < 0) {
                    t[j] = (float)row[(size_t)(w - 1) * xs];
                } else {
                    float a = (float)row[(size_t)ix[j] * xs], b = (float)row[(size_t)(ix[j] + 1) * xs];
                    t[j] = (1.0f - dx[j]) * a + dx[j] * b;
                }
            }
        }
        for (int i = 0; i < ch; i++) {
            int r = y0 + i;
            float sy = src_pos(r, rh, h);
            int iy = (int)sy;
            float dy = sy - (float)iy;
            int last = (r == rh - 1 || h == 1);
            if (iy > h - 2 && !last) { iy = h - 1; last = 1; dy = 0.0f; } /* cannot happen either */
            const float *t0 = tmp + (size_t)iy * cw;
            const float *t1 = last ? t0 : t0 + cw;
            uint8_t *d = dst + (size_t)i * cw;
            for (int j = 0; j < cw; j++) {
                float v = (1.0f - dy) * t0[j];
                if (!last) v += dy * t1[j];
                d[j] = round_u8(v);
            }
        }
    }
    free(ix);
    free(dx);
    free(tmp);
    return TERN_STATUS_OK;
}

/* stb_image decodes some truncated baseline JPEGs without complaint (the missing part comes out
 * grey). A complete JPEG has an EOI marker (FF D9) after its last SOS (FF DA): inside
 * entropy-coded data FF is always followed by 00 or a restart marker, so neither can appear
 * there by accident; an EXIF thumbnail sits before the main image's SOS. */
static int jpeg_looks_truncated(const uint8_t *d, size_t n) {
    if (n < 4 || d[0] != 0xFF || d[1] != 0xD8) return 0; /* not a JPEG */
    size_t last_sos = 0, last_eoi = 0;
    int have_sos = 0, have_eoi = 0;
    for (size_t i = 2; i + 1 < n; i++) {
        if (d[i] != 0xFF) continue;
        if (d[i + 1] == 0xDA) { last_sos = i; have_sos = 1; }
        else if (d[i + 1] == 0xD9) { last_eoi = i; have_eoi = 1; }
    }
    return !have_sos || !have_eoi || last_eoi < last_sos;
}

/* Debian's stb_image (v2.27) trusts the symbol counts of a JPEG Huffman table (DHT): counts
 * summing to more than 256 write past its size[257] and values[256] arrays (fixed upstream in
 * 2.28 with a "bad DHT header" check; found by tests/fuzz_image.c). Until the system library has
 * the fix, tern walks the JPEG's marker segments the way stb does and refuses such a table. */
static int jpeg_bad_huffman(const uint8_t *d, size_t n) {
    if (n < 2 || d[0] != 0xFF || d[1] != 0xD8) return 0;
#define AT(k) ((k) < n ? d[k] : 0) /* stb reads zeros past the end */
    for (size_t i = 2; i + 1 < n;) {
        if (d[i] != 0xFF) { i++; continue; }                   /* entropy-coded data, garbage */
        uint8_t m = d[i + 1];
        if (m == 0xFF) { i++; continue; }                      /* fill byte */
        if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
        if (m == 0xD9) return 0;                               /* end of image */
        long L = (long)(AT(i + 2) << 8 | AT(i + 3)) - 2;
        size_t p = i + 4;
        if (m == 0xC4) {
            while (L > 0) {
                long cnt = 0;
                for (int k = 0; k < 16; k++) cnt += AT(p + 1 + (size_t)k);
                if (cnt > 256) return 1;
                p += 17 + (size_t)cnt;
                L -= 17 + cnt;
            }
            if (L != 0) return 0; /* stb stops at this segment with an error */
            i = p;
        } else {
            i = p + (size_t)(L > 0 ? L : 0);
        }
    }
#undef AT
    return 0;
}

/* Only these formats reach stb_image (it also decodes GIF, PSD, HDR, PIC, PNM and TGA, which
 * tern neither needs nor fuzzes): by their signature, whatever the file name says. */
static int known_format(const uint8_t *d, size_t n) {
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    return (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) || (n >= 8 && memcmp(d, png, 8) == 0) ||
           (n >= 2 && d[0] == 'B' && d[1] == 'M');
}

/* The decoded-size limit, checked on the header before anything is decoded. */
static enum tern_status check_dims(const char *what, int iw, int ih) {
    if (iw <= 0 || ih <= 0) return tern_errorf(TERN_STATUS_FORMAT, "%s: empty image (%dx%d)", what, iw, ih);
    if (iw > TERN_IMAGE_MAX_SIDE || ih > TERN_IMAGE_MAX_SIDE || (int64_t)iw * ih > TERN_IMAGE_MAX_PIXELS)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: image of %dx%d (WxH) pixels is larger than tern decodes "
                           "(at most %d per side and %d pixels, TERN_IMAGE_MAX_PIXELS)", what, iw, ih, TERN_IMAGE_MAX_SIDE, TERN_IMAGE_MAX_PIXELS);
    return TERN_STATUS_OK;
}

enum tern_status tern_image_load(const char *path, const tern_preproc *pp, uint8_t **chw, int *h, int *w) {
    *chw = NULL;
    if (h) *h = 0;
    if (w) *w = 0;
    uint8_t *file;
    size_t len;
    enum tern_status st = tern_read_file(path, &file, &len);
    if (st) return st;
    st = tern_image_decode(file, len, path, pp, chw, h, w);
    free(file);
    return st;
}

enum tern_status tern_image_decode(const uint8_t *file, size_t len, const char *path, const tern_preproc *pp,
                                   uint8_t **chw, int *h, int *w) {
    *chw = NULL;
    if (h) *h = 0;
    if (w) *w = 0;
    enum tern_status st;
    if (len == 0) return tern_errorf(TERN_STATUS_FORMAT, "%s: empty file, not an image", path);
    if (len > INT32_MAX) return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: image file too large (%zu bytes)", path, len);
    if (!known_format(file, len)) return tern_errorf(TERN_STATUS_FORMAT, "%s: not a JPEG, PNG or BMP file", path);
    if (jpeg_looks_truncated(file, len))
        return tern_errorf(TERN_STATUS_FORMAT, "%s: corrupt JPEG: truncated (no end-of-image marker after the last scan)", path);
    if (jpeg_bad_huffman(file, len))
        return tern_errorf(TERN_STATUS_FORMAT, "%s: corrupt JPEG: a Huffman table declares more than 256 symbols", path);
    int iw = 0, ih = 0, nc = 0;
    if (!stbi_info_from_memory(file, (int)len, &iw, &ih, &nc)) {
        const char *why = stbi_failure_reason();
        return tern_errorf(TERN_STATUS_FORMAT, "%s: cannot decode image: %s", path, why ? why : "unknown reason");
    }
    if ((st = check_dims(path, iw, ih))) return st;
    int ih2 = 0, iw2 = 0;
    uint8_t *px = stbi_load_from_memory(file, (int)len, &iw2, &ih2, &nc, 3);
    if (px && (iw2 != iw || ih2 != ih)) { /* the header said otherwise: do not trust either */
        stbi_image_free(px);
        return tern_errorf(TERN_STATUS_FORMAT, "%s: corrupt image: header says %dx%d, decoder gives %dx%d", path, iw, ih, iw2, ih2);
    }
    if (!px) {
        const char *why = stbi_failure_reason();
        return tern_errorf(TERN_STATUS_FORMAT, "%s: cannot decode image: %s", path, why ? why : "unknown reason");
    }
    int oh, ow;
    st = tern_preproc_dims(pp, path, ih, iw, NULL, NULL, &oh, &ow);
    if (st) {
        stbi_image_free(px);
        return st;
    }
    uint8_t *out = tern_malloc((size_t)3 * oh * ow);
    if (!out) {
        stbi_image_free(px);
        return TERN_STATUS_NOMEM;
    }
    /* stb gives interleaved HWC: channel stride 1, row stride 3*w, pixel stride 3. */
    st = tern_preproc_apply(pp, path, px, ih, iw, 1, (size_t)3 * iw, 3, out, oh, ow);
    stbi_image_free(px);
    if (st) {
        free(out);
        return st;
    }
    *chw = out;
    if (h) *h = oh;
    if (w) *w = ow;
    return TERN_STATUS_OK;
}

enum tern_status tern_image_size(const char *path, int *h, int *w) {
    FILE *f = fopen(path, "rb");
    if (!f) return tern_errorf(TERN_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t head[8] = {0};
    size_t got = fread(head, 1, sizeof head, f);
    rewind(f);
    int iw, ih, nc;
    int ok = known_format(head, got) && stbi_info_from_file(f, &iw, &ih, &nc);
    fclose(f);
    if (!ok) {
        const char *why = known_format(head, got) ? stbi_failure_reason() : "not a JPEG, PNG or BMP file";
        return tern_errorf(TERN_STATUS_FORMAT, "%s: not a readable image: %s", path, why ? why : "unknown reason");
    }
    enum tern_status st = check_dims(path, iw, ih);
    if (st) return st;
    *h = ih;
    *w = iw;
    return TERN_STATUS_OK;
}
