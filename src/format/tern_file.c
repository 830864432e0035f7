/* The .tern file: writer and validating reader (layout in tern_format.h, prose in docs/FORMAT.md).
 *
 * Nothing here fwrites a struct: every field is put/got byte by byte, little-endian, at the
 * offset the layout names, so the file is the same on every host and the writer never emits
 * padding or pointer bytes. The writer builds the whole file in memory (zeroed first, so it is
 * byte-identical for the same model), then writes a temporary file next to the target and
 * renames it into place. The reader trusts nothing: every length and offset is checked against
 * the bytes that are really there before it is used, the checksums before the content is
 * parsed, the model's structure (tern_qmodel_check) before array sizes are derived from it. */
#include "format/tern_format.h"
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(TERN_HDR_CRC + 4 == TERN_HDR_SIZE, "header layout");
_Static_assert(TERN_SEC_RESERVED + 4 == TERN_SEC_SIZE, "section entry layout");
_Static_assert(TERN_MOD_SOURCE + 256 == TERN_MOD_SIZE, "model record layout");
_Static_assert(sizeof(((tern_qmodel *)0)->source) == 256, "source field size");
_Static_assert(TERN_TEN_RESERVED + 4 == TERN_TEN_SIZE, "tensor record layout");
_Static_assert(TERN_LAY_IN + 4 * TERN_MAX_QIN == TERN_LAY_OUT, "layer inputs");
_Static_assert(TERN_LAY_NAME + 64 == TERN_LAY_CONV, "layer name");
_Static_assert(sizeof(((tern_qlayer *)0)->name) == 64, "name field size");
_Static_assert(TERN_CONV_FLAGS + 4 == TERN_CONV_SIZE, "conv block layout");
_Static_assert(TERN_LAY_CONV + TERN_CONV_SIZE == TERN_LAY_SIZE, "layer record layout");
_Static_assert(TERN_HDR_SIZE % 8 == 0 && TERN_LAY_SIZE % 8 == 0 && TERN_TEN_SIZE % 8 == 0, "record alignment");

/* ---- checksums and little-endian access ---- */

uint32_t tern_crc32(const uint8_t *p, size_t n) {
    uint32_t table[256];   /* 1 KB, built per call: no global state, and calls are few */
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static void put_u32(uint8_t *p, uint32_t v) { put_le(p, v, 4); }
static void put_i32(uint8_t *p, int32_t v) { put_le(p, (uint32_t)v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { put_le(p, v, 8); }
static void put_f32(uint8_t *p, float f) { uint32_t u; memcpy(&u, &f, 4); put_u32(p, u); }
static uint32_t get_u32(const uint8_t *p) { return (uint32_t)get_le(p, 4); }
static int32_t get_i32(const uint8_t *p) { return (int32_t)get_u32(p); }
static uint64_t get_u64(const uint8_t *p) { return get_le(p, 8); }
static float get_f32(const uint8_t *p) { uint32_t u = get_u32(p); float f; memcpy(&f, &u, 4); return f; }

static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* ---- field tables: the int32 fields of a layer record and where they live in memory ---- */

typedef struct { uint16_t file, mem; } field_map;
#define LF(off, f) {off, offsetof(tern_qlayer, f)}
static const field_map layer_i32[] = {
    LF(TERN_LAY_OUT, out), LF(TERN_LAY_LA, la), LF(TERN_LAY_LB, lb), LF(TERN_LAY_RS, rs),
    LF(TERN_LAY_KH, kh), LF(TERN_LAY_KW, kw), LF(TERN_LAY_SH, sh), LF(TERN_LAY_SW, sw),
    LF(TERN_LAY_PAD_T, pad_t), LF(TERN_LAY_PAD_L, pad_l), LF(TERN_LAY_PAD_B, pad_b), LF(TERN_LAY_PAD_R, pad_r),
    LF(TERN_LAY_QMIN, qmin), LF(TERN_LAY_QMAX, qmax), LF(TERN_LAY_NMULT, nmult),
    LF(TERN_LAY_PAD_C0, pad_c0), LF(TERN_LAY_PAD_C1, pad_c1), LF(TERN_LAY_PAD_H0, pad_h0),
    LF(TERN_LAY_PAD_H1, pad_h1), LF(TERN_LAY_PAD_W0, pad_w0), LF(TERN_LAY_PAD_W1, pad_w1),
    LF(TERN_LAY_START_C, start_c), LF(TERN_LAY_START_H, start_h), LF(TERN_LAY_START_W, start_w),
    LF(TERN_LAY_STEP_C, step_c), LF(TERN_LAY_STEP_H, step_h), LF(TERN_LAY_STEP_W, step_w),
};
#define CF(off, f) {TERN_LAY_CONV + off, offsetof(tern_qlayer, conv.f)}
static const field_map conv_i32[] = {
    CF(TERN_CONV_CIN, cin), CF(TERN_CONV_COUT, cout), CF(TERN_CONV_GROUPS, groups),
    CF(TERN_CONV_KH, kh), CF(TERN_CONV_KW, kw), CF(TERN_CONV_SH, sh), CF(TERN_CONV_SW, sw),
    CF(TERN_CONV_DH, dh), CF(TERN_CONV_DW, dw), CF(TERN_CONV_PAD_T, pad_t), CF(TERN_CONV_PAD_L, pad_l),
    CF(TERN_CONV_PAD_B, pad_b), CF(TERN_CONV_PAD_R, pad_r), CF(TERN_CONV_WTYPE, wtype),
    CF(TERN_CONV_CLUSTER, cluster), CF(TERN_CONV_QMIN, qmin), CF(TERN_CONV_QMAX, qmax),
};
#define NFIELDS(t) (sizeof(t) / sizeof(t[0]))
static int *field(tern_qlayer *L, const field_map *f) { return (int *)((char *)L + f->mem); }
static int field_c(const tern_qlayer *L, const field_map *f) {
    int v;
    memcpy(&v, (const char *)L + f->mem, sizeof v);
    return v;
}

/* ---- weight codes ---- */

static const int pow3[5] = {1, 3, 9, 27, 81};

static size_t packed_bytes(int wtype, int64_t n) {
    return wtype == TERN_WTYPE_TERNARY ? (size_t)(n + 4) / 5 : wtype == TERN_WTYPE_INT4 ? (size_t)(n + 1) / 2 : (size_t)n;
}

/* out is zeroed, packed_bytes() long; codes are validated. */
static void pack_codes(int wtype, const int8_t *w, int64_t n, uint8_t *out) {
    for (int64_t i = 0; i < n; i++) {
        if (wtype == TERN_WTYPE_TERNARY) out[i / 5] = (uint8_t)(out[i / 5] + (w[i] + 1) * pow3[i % 5]);
        else if (wtype == TERN_WTYPE_INT4) out[i / 2] |= (uint8_t)((w[i] & 15) << (4 * (i % 2)));
        else out[i] = (uint8_t)w[i];
    }
}

/* Returns the index of the first invalid byte, or -1 when all decode to in-range codes and the
 * unused digits of the last byte are zero. */
static int64_t unpack_codes(int wtype, const uint8_t *in, int64_t n, int8_t *w) {
    const int64_t nb = (int64_t)packed_bytes(wtype, n);
    for (int64_t j = 0; j < nb; j++) {
        unsigned v = in[j];
        if (wtype == TERN_WTYPE_TERNARY) {
            if (v >= 243) return j;
            for (int k = 0; k < 5; k++, v /= 3) {
                const int64_t i = j * 5 + k;
                if (i < n) w[i] = (int8_t)((int)(v % 3) - 1);
                else if (v % 3) return j;
            }
        } else if (wtype == TERN_WTYPE_INT4) {
            for (int k = 0; k < 2; k++) {
                const int nib = (v >> (4 * k)) & 15;
                const int64_t i = j * 2 + k;
                if (i < n) {
                    if (nib == 8) return j;
                    w[i] = (int8_t)(nib >= 8 ? nib - 16 : nib);
                } else if (nib) return j;
            }
        } else {
            if (v == 0x80) return j;
            w[j] = (int8_t)v;
        }
    }
    return -1;
}

/* ---- layer blobs ---- */

static const int arr_esize[TERN_ARR_COUNT] = {1, 2, 4, 4, 4, 1, 1, 4, 1, 1, 4};
static const char *const arr_name[TERN_ARR_COUNT] = {"weights", "cscale", "bias", "mpos", "mneg",
                                                    "shift", "pad_value", "mult", "mshift", "lut", "perm"};
/* The arrays that may be stored as one repeated element: the per-channel CONV arrays, whose
 * counts are bounded by the layer's stored codes (so a tiny file cannot expand to a huge model). */
#define UNIFORM_OK ((1u << TERN_ARR_CSCALE) | (1u << TERN_ARR_BIAS) | (1u << TERN_ARR_MPOS) | \
                    (1u << TERN_ARR_MNEG) | (1u << TERN_ARR_SHIFT) | (1u << TERN_ARR_PADV))

typedef struct {
    int64_t count[TERN_ARR_COUNT];   /* elements in memory */
    size_t off[TERN_ARR_COUNT];      /* byte offset in the blob */
    size_t bytes[TERN_ARR_COUNT];    /* stored bytes */
    size_t total;
} blob_layout;

/* For a layer whose geometry has passed tern_qmodel_check (so every count is bounded). */
static void layout_blob(const tern_qmodel *m, const tern_qlayer *L, int has_padv, uint32_t uniform, blob_layout *b) {
    memset(b, 0, sizeof *b);
    if (L->op == TERN_QOP_CONV) {
        const tern_qconv *c = &L->conv;
        b->count[TERN_ARR_W] = (int64_t)c->cout * (c->cin / c->groups) * c->kh * c->kw;
        b->count[TERN_ARR_CSCALE] = (int64_t)c->cout * tern_qconv_nclusters(c);
        b->count[TERN_ARR_BIAS] = b->count[TERN_ARR_MPOS] = b->count[TERN_ARR_MNEG] = b->count[TERN_ARR_SHIFT] = c->cout;
        b->count[TERN_ARR_PADV] = has_padv ? c->cin : 0;
    } else if (L->op == TERN_QOP_AVGPOOL || L->op == TERN_QOP_GLOBALAVGPOOL) {
        b->count[TERN_ARR_MULT] = b->count[TERN_ARR_MSHIFT] = L->nmult;
    } else if (L->op == TERN_QOP_LUT) {
        b->count[TERN_ARR_LUT] = 256;
    } else if (L->op == TERN_QOP_CHANPERM) {
        b->count[TERN_ARR_PERM] = m->tensors[L->out].c;
    }
    size_t pos = 0;
    for (int a = 0; a < TERN_ARR_COUNT; a++) {
        if (!b->count[a]) continue;
        b->bytes[a] = a == TERN_ARR_W ? packed_bytes(L->conv.wtype, b->count[a])
                                      : (size_t)((uniform >> a) & 1 ? 1 : b->count[a]) * (size_t)arr_esize[a];
        pos = TERN_ALIGN_UP(pos, TERN_BLOB_ALIGN);
        b->off[a] = pos;
        pos += b->bytes[a];
    }
    b->total = pos;
}

static const void *arr_ptr(const tern_qlayer *L, int a) {
    switch (a) {
    case TERN_ARR_W: return L->conv.w;
    case TERN_ARR_CSCALE: return L->conv.cscale;
    case TERN_ARR_BIAS: return L->conv.bias;
    case TERN_ARR_MPOS: return L->conv.mpos;
    case TERN_ARR_MNEG: return L->conv.mneg;
    case TERN_ARR_SHIFT: return L->conv.shift;
    case TERN_ARR_PADV: return L->conv.pad_value;
    case TERN_ARR_MULT: return L->mult;
    case TERN_ARR_LUT: return L->lut;
    case TERN_ARR_PERM: return L->perm;
    default: return L->mshift;
    }
}
static void arr_set(tern_qlayer *L, int a, void *p) {
    switch (a) {
    case TERN_ARR_W: L->conv.w = p; break;
    case TERN_ARR_CSCALE: L->conv.cscale = p; break;
    case TERN_ARR_BIAS: L->conv.bias = p; break;
    case TERN_ARR_MPOS: L->conv.mpos = p; break;
    case TERN_ARR_MNEG: L->conv.mneg = p; break;
    case TERN_ARR_SHIFT: L->conv.shift = p; break;
    case TERN_ARR_PADV: L->conv.pad_value = p; break;
    case TERN_ARR_MULT: L->mult = p; break;
    case TERN_ARR_LUT: L->lut = p; break;
    case TERN_ARR_PERM: L->perm = p; break;
    default: L->mshift = p; break;
    }
}
/* Element i of a non-code array, as its stored two's-complement bits. */
static uint64_t arr_get(const void *p, int a, int64_t i) {
    switch (arr_esize[a]) {
    case 1: return ((const uint8_t *)p)[i];
    case 2: return (uint16_t)((const int16_t *)p)[i];
    default: return (uint32_t)((const int32_t *)p)[i];
    }
}
static void arr_put(void *p, int a, int64_t i, uint64_t v) {
    switch (arr_esize[a]) {
    case 1: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case 2: ((int16_t *)p)[i] = (int16_t)(uint16_t)v; break;
    default: ((int32_t *)p)[i] = (int32_t)(uint32_t)v; break;
    }
}

/* ---- writer ---- */

static uint32_t uniform_mask(const tern_qlayer *L, const blob_layout *b) {
    uint32_t mask = 0;
    for (int a = 0; a < TERN_ARR_COUNT; a++) {
        if (!((UNIFORM_OK >> a) & 1) || b->count[a] < 2) continue;
        const void *p = arr_ptr(L, a);
        int64_t i = 1;
        while (i < b->count[a] && arr_get(p, a, i) == arr_get(p, a, 0)) i++;
        if (i == b->count[a]) mask |= 1u << a;
    }
    return mask;
}

static void put_name(uint8_t *dst, const char *s, size_t cap) {
    memcpy(dst, s, strnlen(s, cap - 1));   /* the rest stays zero */
}

/* Serialise a validated model into a fresh buffer. */
static enum tern_status build_file(const tern_qmodel *m, const char *path, uint8_t **out, size_t *outlen) {
    enum { NSEC = 4 };
    blob_layout *bl = tern_calloc((size_t)m->nlayers, sizeof *bl);
    uint32_t *umask = tern_calloc((size_t)m->nlayers, sizeof *umask);
    size_t *boff = tern_calloc((size_t)m->nlayers, sizeof *boff);
    if (!bl || !umask || !boff) {
        free(bl); free(umask); free(boff);
        return TERN_STATUS_NOMEM;
    }
    size_t blobs = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const tern_qlayer *L = &m->layers[i];
        layout_blob(m, L, L->op == TERN_QOP_CONV && L->conv.pad_value, 0, &bl[i]);
        umask[i] = uniform_mask(L, &bl[i]);
        layout_blob(m, L, L->op == TERN_QOP_CONV && L->conv.pad_value, umask[i], &bl[i]);
        blobs = TERN_ALIGN_UP(blobs, TERN_BLOB_ALIGN);
        boff[i] = bl[i].total ? blobs : 0;
        blobs += bl[i].total;
    }
    const size_t seclen[NSEC] = {TERN_MOD_SIZE, (size_t)m->ntensors * TERN_TEN_SIZE,
                                 (size_t)m->nlayers * TERN_LAY_SIZE, blobs};
    size_t secoff[NSEC], pos = TERN_HDR_SIZE + NSEC * TERN_SEC_SIZE;
    for (int s = 0; s < NSEC; s++) {
        pos = TERN_ALIGN_UP(pos, TERN_FILE_ALIGN);
        secoff[s] = pos;
        pos += seclen[s];
    }
    const size_t total = pos;
    uint8_t *f = tern_calloc(total, 1);
    if (!f) {
        free(bl); free(umask); free(boff);
        return TERN_STATUS_NOMEM;
    }

    /* MODEL */
    uint8_t *p = f + secoff[0];
    put_i32(p + TERN_MOD_IN_C, m->in_c);
    put_i32(p + TERN_MOD_IN_H, m->in_h);
    put_i32(p + TERN_MOD_IN_W, m->in_w);
    put_i32(p + TERN_MOD_BGR, m->bgr);
    put_i32(p + TERN_MOD_RESIZE_SHORT, m->resize_short);
    put_i32(p + TERN_MOD_CROP, m->crop);
    for (int k = 0; k < 3; k++) {
        put_f32(p + TERN_MOD_MEAN + 4 * k, m->mean[k]);
        put_f32(p + TERN_MOD_STD + 4 * k, m->std[k]);
    }
    put_i32(p + TERN_MOD_NCLASSES, m->nclasses);
    put_i32(p + TERN_MOD_NTENSORS, m->ntensors);
    put_i32(p + TERN_MOD_NLAYERS, m->nlayers);
    put_i32(p + TERN_MOD_OUTPUT, m->output);
    put_name(p + TERN_MOD_SOURCE, m->source, sizeof m->source);

    /* TENSORS */
    for (int i = 0; i < m->ntensors; i++) {
        const tern_qtensor *t = &m->tensors[i];
        p = f + secoff[1] + (size_t)i * TERN_TEN_SIZE;
        put_i32(p + TERN_TEN_C, t->c);
        put_i32(p + TERN_TEN_H, t->h);
        put_i32(p + TERN_TEN_W, t->w);
        put_i32(p + TERN_TEN_EXP, t->exp);
        put_u32(p + TERN_TEN_FLAGS, (t->is_signed ? TERN_TENF_SIGNED : 0) | (t->wide ? TERN_TENF_WIDE : 0));
    }

    /* LAYERS and BLOBS */
    for (int i = 0; i < m->nlayers; i++) {
        const tern_qlayer *L = &m->layers[i];
        p = f + secoff[2] + (size_t)i * TERN_LAY_SIZE;
        put_u32(p + TERN_LAY_OP, (uint32_t)L->op);
        put_u32(p + TERN_LAY_NIN, (uint32_t)L->nin);
        for (int k = 0; k < L->nin; k++) put_i32(p + TERN_LAY_IN + 4 * k, L->in[k]);
        for (size_t k = 0; k < NFIELDS(layer_i32); k++) put_i32(p + layer_i32[k].file, field_c(L, &layer_i32[k]));
        put_f32(p + TERN_LAY_SQNR, L->sqnr_db);
        put_f32(p + TERN_LAY_ZERO_FRAC, L->zero_frac);
        put_u32(p + TERN_LAY_UNIFORM, umask[i]);
        put_u64(p + TERN_LAY_MACS, (uint64_t)L->macs);
        put_u64(p + TERN_LAY_BLOB_OFFSET, boff[i]);
        put_u64(p + TERN_LAY_BLOB_LENGTH, bl[i].total);
        put_name(p + TERN_LAY_NAME, L->name, sizeof L->name);
        if (L->op == TERN_QOP_CONV) {
            for (size_t k = 0; k < NFIELDS(conv_i32); k++) put_i32(p + conv_i32[k].file, field_c(L, &conv_i32[k]));
            put_u32(p + TERN_LAY_CONV + TERN_CONV_FLAGS, (L->conv.in_signed ? TERN_CONVF_IN_SIGNED : 0) |
                                                             (L->conv.out_wide ? TERN_CONVF_OUT_WIDE : 0) |
                                                             (L->conv.pad_value ? TERN_CONVF_PAD_VALUE : 0));
        }
        uint8_t *b = f + secoff[3] + boff[i];
        for (int a = 0; a < TERN_ARR_COUNT; a++) {
            if (!bl[i].count[a]) continue;
            if (a == TERN_ARR_W) {
                pack_codes(L->conv.wtype, L->conv.w, bl[i].count[a], b + bl[i].off[a]);
                continue;
            }
            const int64_t n = (umask[i] >> a) & 1 ? 1 : bl[i].count[a];
            for (int64_t k = 0; k < n; k++)
                put_le(b + bl[i].off[a] + (size_t)k * arr_esize[a], arr_get(arr_ptr(L, a), a, k), arr_esize[a]);
        }
    }
    free(bl); free(umask); free(boff);

    /* section table, then the header that covers it */
    static const uint32_t types[NSEC] = {TERN_SECTION_MODEL, TERN_SECTION_TENSORS, TERN_SECTION_LAYERS,
                                         TERN_SECTION_BLOBS};
    for (int s = 0; s < NSEC; s++) {
        p = f + TERN_HDR_SIZE + (size_t)s * TERN_SEC_SIZE;
        put_u32(p + TERN_SEC_TYPE, types[s]);
        put_u64(p + TERN_SEC_OFFSET, secoff[s]);
        put_u64(p + TERN_SEC_LENGTH, seclen[s]);
        put_u32(p + TERN_SEC_CRC, tern_crc32(f + secoff[s], seclen[s]));
    }
    memcpy(f + TERN_HDR_MAGIC, TERN_FILE_MAGIC, 4);
    put_u32(f + TERN_HDR_VERSION, TERN_FILE_VERSION);
    put_u32(f + TERN_HDR_NSECTIONS, NSEC);
    put_u64(f + TERN_HDR_FILE_SIZE, total);
    put_u64(f + TERN_HDR_TABLE_OFFSET, TERN_HDR_SIZE);
    put_u32(f + TERN_HDR_TABLE_CRC, tern_crc32(f + TERN_HDR_SIZE, NSEC * TERN_SEC_SIZE));
    put_u32(f + TERN_HDR_CRC, tern_crc32(f, TERN_HDR_CRC));
    (void)path;
    *out = f;
    *outlen = total;
    return TERN_STATUS_OK;
}

enum tern_status tern_qmodel_save(const tern_qmodel *m, const char *path) {
    if (!path) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_qmodel_save: no path");
    enum tern_status st = tern_qmodel_validate(m, path);
    if (st) return st;
    uint8_t *buf;
    size_t len;
    if ((st = build_file(m, path, &buf, &len))) return tern_error_prefix(st, "%s", path);

    /* temp file in the same directory, so rename() is atomic and never crosses filesystems */
    const size_t plen = strlen(path);
    char *tmp = tern_malloc(plen + 16);
    if (!tmp) {
        free(buf);
        return TERN_STATUS_NOMEM;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = tern_errorf(TERN_STATUS_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(errno));
        free(tmp);
        free(buf);
        return st;
    }
    const char *fail = NULL;
    int err = 0;
    for (size_t done = 0; done < len && !fail;) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { fail = "write failed"; err = n < 0 ? errno : ENOSPC; }
        else done += (size_t)n;
    }
    if (!fail && fchmod(fd, 0644) != 0) { fail = "cannot set permissions"; err = errno; }
    if (!fail && fsync(fd) != 0) { fail = "fsync failed"; err = errno; }
    if (close(fd) != 0 && !fail) { fail = "close failed"; err = errno; }
    if (!fail && rename(tmp, path) != 0) { fail = "cannot rename the temporary file into place"; err = errno; }
    if (fail) {
        unlink(tmp);
        st = tern_errorf(TERN_STATUS_IO, "%s: %s: %s", path, fail, strerror(err));
    }
    free(tmp);
    free(buf);
    return st;
}

/* ---- reader ---- */

typedef struct {
    const uint8_t *d;
    size_t len;
    const char *name;
} reader;

#define FAIL(...) return tern_errorf(TERN_STATUS_FORMAT, __VA_ARGS__)

typedef struct { uint64_t off, len; } span;

/* Header, section table, checksums and the zero padding between sections. */
static enum tern_status read_frame(const reader *r, span sec[5]) {
    const uint8_t *d = r->d;
    const char *nm = r->name;
    if (r->len < TERN_HDR_SIZE) FAIL("%s: %zu bytes, too short for the %d-byte header", nm, r->len, TERN_HDR_SIZE);
    if (memcmp(d + TERN_HDR_MAGIC, TERN_FILE_MAGIC, 4) != 0) FAIL("%s: not a .tern file (bad magic)", nm);
    if (get_u32(d + TERN_HDR_CRC) != tern_crc32(d, TERN_HDR_CRC)) FAIL("%s: header checksum mismatch (corrupt file)", nm);
    const uint32_t version = get_u32(d + TERN_HDR_VERSION);
    if (version != TERN_FILE_VERSION)
        FAIL("%s: format version %u, this reader reads version %u", nm, version, TERN_FILE_VERSION);
    if (get_u32(d + TERN_HDR_FLAGS) != 0) FAIL("%s: header flags 0x%x unknown", nm, get_u32(d + TERN_HDR_FLAGS));
    if (!all_zero(d + TERN_HDR_TABLE_CRC + 4, TERN_HDR_CRC - TERN_HDR_TABLE_CRC - 4))
        FAIL("%s: reserved header bytes are not zero", nm);
    const uint64_t fsize = get_u64(d + TERN_HDR_FILE_SIZE);
    if (fsize != r->len)
        FAIL("%s: header says %llu bytes but there are %zu (%s)", nm, (unsigned long long)fsize, r->len,
             fsize > r->len ? "truncated" : "trailing bytes");
    const uint32_t nsec = get_u32(d + TERN_HDR_NSECTIONS);
    if (nsec < 1 || nsec > TERN_MAX_SECTIONS) FAIL("%s: %u sections, out of range 1..%d", nm, nsec, TERN_MAX_SECTIONS);
    if (get_u64(d + TERN_HDR_TABLE_OFFSET) != TERN_HDR_SIZE)
        FAIL("%s: section table at %llu, expected %d", nm, (unsigned long long)get_u64(d + TERN_HDR_TABLE_OFFSET),
             TERN_HDR_SIZE);
    const size_t tend = TERN_HDR_SIZE + (size_t)nsec * TERN_SEC_SIZE;
    if (tend > r->len) FAIL("%s: section table (%u entries) runs past the end of the file", nm, nsec);
    if (get_u32(d + TERN_HDR_TABLE_CRC) != tern_crc32(d + TERN_HDR_SIZE, tend - TERN_HDR_SIZE))
        FAIL("%s: section table checksum mismatch (corrupt file)", nm);

    uint64_t prev_end = tend;
    for (uint32_t s = 0; s < nsec; s++) {
        const uint8_t *e = d + TERN_HDR_SIZE + (size_t)s * TERN_SEC_SIZE;
        const uint32_t type = get_u32(e + TERN_SEC_TYPE), flags = get_u32(e + TERN_SEC_FLAGS);
        const uint64_t off = get_u64(e + TERN_SEC_OFFSET), len = get_u64(e + TERN_SEC_LENGTH);
        if (flags & ~TERN_SECF_OPTIONAL) FAIL("%s: section %u (type %u): unknown flags 0x%x", nm, s, type, flags);
        if (get_u32(e + TERN_SEC_RESERVED)) FAIL("%s: section %u (type %u): reserved field not zero", nm, s, type);
        if (off % TERN_FILE_ALIGN) FAIL("%s: section %u (type %u): offset %llu not a multiple of %d", nm, s, type,
                                        (unsigned long long)off, TERN_FILE_ALIGN);
        if (off < prev_end)
            FAIL("%s: section %u (type %u): offset %llu overlaps the table or the previous section (which ends at %llu)",
                 nm, s, type, (unsigned long long)off, (unsigned long long)prev_end);
        if (off > r->len || len > r->len - off)
            FAIL("%s: section %u (type %u): bytes %llu..+%llu run past the end of the file (%zu bytes)", nm, s, type,
                 (unsigned long long)off, (unsigned long long)len, r->len);
        if (!all_zero(d + prev_end, (size_t)(off - prev_end)))
            FAIL("%s: non-zero bytes in the padding before section %u (type %u)", nm, s, type);
        if (get_u32(e + TERN_SEC_CRC) != tern_crc32(d + off, (size_t)len))
            FAIL("%s: section %u (type %u) checksum mismatch (corrupt file)", nm, s, type);
        if (type >= TERN_SECTION_MODEL && type <= TERN_SECTION_BLOBS) {
            if (sec[type].off) FAIL("%s: section type %u appears twice", nm, type);
            sec[type].off = off;
            sec[type].len = len;
        } else if (!(flags & TERN_SECF_OPTIONAL)) {
            FAIL("%s: section %u has unknown type %u and is not optional (file from a newer tern?)", nm, s, type);
        }
        prev_end = off + len;
    }
    if (prev_end != r->len) FAIL("%s: %llu bytes after the last section", nm, (unsigned long long)(r->len - prev_end));
    static const char *const secname[5] = {"", "MODEL", "TENSORS", "LAYERS", "BLOBS"};
    for (int t = TERN_SECTION_MODEL; t <= TERN_SECTION_BLOBS; t++)
        if (!sec[t].off) FAIL("%s: required section %s (type %d) missing", nm, secname[t], t);
    return TERN_STATUS_OK;
}

static enum tern_status layer_err(const char *nm, int i, const tern_qlayer *L, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum tern_status layer_err(const char *nm, int i, const tern_qlayer *L, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tern_errorf(TERN_STATUS_FORMAT, "%s: layer %d '%s': %s", nm, i, L->name, msg);
}

static int name_ok(const uint8_t *p, size_t cap) {
    const uint8_t *z = memchr(p, 0, cap);
    return z && all_zero(z, cap - (size_t)(z - p));
}

static enum tern_status read_model(const reader *r, tern_qmodel **out) {
    const char *nm = r->name;
    span sec[5] = {{0, 0}};
    enum tern_status st = read_frame(r, sec);
    if (st) return st;
    const uint8_t *d = r->d;

    const uint8_t *p = d + sec[TERN_SECTION_MODEL].off;
    if (sec[TERN_SECTION_MODEL].len != TERN_MOD_SIZE)
        FAIL("%s: MODEL section is %llu bytes, expected %d", nm, (unsigned long long)sec[TERN_SECTION_MODEL].len,
             TERN_MOD_SIZE);
    const int32_t ntensors = get_i32(p + TERN_MOD_NTENSORS), nlayers = get_i32(p + TERN_MOD_NLAYERS);
    if (ntensors < 2 || ntensors > TERN_QLIM_TENSORS) FAIL("%s: MODEL: %d tensors, out of range 2..%d", nm, ntensors, TERN_QLIM_TENSORS);
    if (nlayers < 1 || nlayers > TERN_QLIM_LAYERS) FAIL("%s: MODEL: %d layers, out of range 1..%d", nm, nlayers, TERN_QLIM_LAYERS);
    if (sec[TERN_SECTION_TENSORS].len != (uint64_t)ntensors * TERN_TEN_SIZE)
        FAIL("%s: TENSORS section is %llu bytes, expected %d tensors x %d", nm,
             (unsigned long long)sec[TERN_SECTION_TENSORS].len, ntensors, TERN_TEN_SIZE);
    if (sec[TERN_SECTION_LAYERS].len != (uint64_t)nlayers * TERN_LAY_SIZE)
        FAIL("%s: LAYERS section is %llu bytes, expected %d layers x %d", nm,
             (unsigned long long)sec[TERN_SECTION_LAYERS].len, nlayers, TERN_LAY_SIZE);
    if (!name_ok(p + TERN_MOD_SOURCE, 256)) FAIL("%s: MODEL: source name not NUL-terminated and zero-padded", nm);

    tern_qmodel *m = tern_calloc(1, sizeof *m);
    if (!m) return TERN_STATUS_NOMEM;
    *out = m;   /* the caller frees it on failure */
    m->in_c = get_i32(p + TERN_MOD_IN_C);
    m->in_h = get_i32(p + TERN_MOD_IN_H);
    m->in_w = get_i32(p + TERN_MOD_IN_W);
    m->bgr = get_i32(p + TERN_MOD_BGR);
    m->resize_short = get_i32(p + TERN_MOD_RESIZE_SHORT);
    m->crop = get_i32(p + TERN_MOD_CROP);
    for (int k = 0; k < 3; k++) {
        m->mean[k] = get_f32(p + TERN_MOD_MEAN + 4 * k);
        m->std[k] = get_f32(p + TERN_MOD_STD + 4 * k);
    }
    m->nclasses = get_i32(p + TERN_MOD_NCLASSES);
    m->output = get_i32(p + TERN_MOD_OUTPUT);
    memcpy(m->source, p + TERN_MOD_SOURCE, sizeof m->source);
    m->tensors = tern_calloc((size_t)ntensors, sizeof *m->tensors);
    m->layers = tern_calloc((size_t)nlayers, sizeof *m->layers);
    if (!m->tensors || !m->layers) return TERN_STATUS_NOMEM;
    m->ntensors = ntensors;
    m->nlayers = nlayers;

    for (int i = 0; i < ntensors; i++) {
        p = d + sec[TERN_SECTION_TENSORS].off + (size_t)i * TERN_TEN_SIZE;
        tern_qtensor *t = &m->tensors[i];
        const uint32_t flags = get_u32(p + TERN_TEN_FLAGS);
        if (flags & ~(TERN_TENF_SIGNED | TERN_TENF_WIDE)) FAIL("%s: tensor %d: unknown flags 0x%x", nm, i, flags);
        if (get_u32(p + TERN_TEN_RESERVED)) FAIL("%s: tensor %d: reserved field not zero", nm, i);
        t->c = get_i32(p + TERN_TEN_C);
        t->h = get_i32(p + TERN_TEN_H);
        t->w = get_i32(p + TERN_TEN_W);
        t->exp = get_i32(p + TERN_TEN_EXP);
        t->is_signed = !!(flags & TERN_TENF_SIGNED);
        t->wide = !!(flags & TERN_TENF_WIDE);
    }

    /* layer records; what a record cannot say in memory (pad_value present, uniform arrays, blob
     * position) is kept aside until the arrays are read */
    uint8_t *has_padv = tern_calloc((size_t)nlayers, 1);
    if (!has_padv) return TERN_STATUS_NOMEM;
    for (int i = 0; i < nlayers && !st; i++) {
        p = d + sec[TERN_SECTION_LAYERS].off + (size_t)i * TERN_LAY_SIZE;
        tern_qlayer *L = &m->layers[i];
        L->op = (int)get_u32(p + TERN_LAY_OP);
        L->nin = (int)get_u32(p + TERN_LAY_NIN);
        if (!name_ok(p + TERN_LAY_NAME, sizeof L->name)) {
            st = tern_errorf(TERN_STATUS_FORMAT, "%s: layer %d: name not NUL-terminated and zero-padded", nm, i);
            break;
        }
        memcpy(L->name, p + TERN_LAY_NAME, sizeof L->name);
        for (int k = 0; k < TERN_MAX_QIN; k++) {
            const int32_t v = get_i32(p + TERN_LAY_IN + 4 * k);
            if (k < L->nin) L->in[k] = v;
            else if (v) {
                st = tern_errorf(TERN_STATUS_FORMAT, "%s: layer %d '%s': unused input slot %d is %d, not 0", nm, i,
                                 L->name, k, v);
                break;
            }
        }
        for (size_t k = 0; k < NFIELDS(layer_i32); k++) *field(L, &layer_i32[k]) = get_i32(p + layer_i32[k].file);
        L->sqnr_db = get_f32(p + TERN_LAY_SQNR);
        L->zero_frac = get_f32(p + TERN_LAY_ZERO_FRAC);
        L->macs = (int64_t)get_u64(p + TERN_LAY_MACS);
        const uint8_t *cb = p + TERN_LAY_CONV;
        if (L->op == TERN_QOP_CONV) {
            for (size_t k = 0; k < NFIELDS(conv_i32); k++) *field(L, &conv_i32[k]) = get_i32(p + conv_i32[k].file);
            const uint32_t cf = get_u32(cb + TERN_CONV_FLAGS);
            if (cf & ~(TERN_CONVF_IN_SIGNED | TERN_CONVF_OUT_WIDE | TERN_CONVF_PAD_VALUE))
                st = tern_errorf(TERN_STATUS_FORMAT, "%s: layer %d '%s': unknown conv flags 0x%x", nm, i, L->name, cf);
            L->conv.in_signed = !!(cf & TERN_CONVF_IN_SIGNED);
            L->conv.out_wide = !!(cf & TERN_CONVF_OUT_WIDE);
            has_padv[i] = !!(cf & TERN_CONVF_PAD_VALUE);
        } else if (!all_zero(cb, TERN_CONV_SIZE)) {
            st = tern_errorf(TERN_STATUS_FORMAT, "%s: layer %d '%s': conv fields set on a non-conv layer", nm, i, L->name);
        }
    }
    if (!st) st = tern_qmodel_check(m, nm, 0);

    /* arrays, sized from the now-trusted geometry */
    const uint8_t *blobs = d + sec[TERN_SECTION_BLOBS].off;
    const uint64_t blen = sec[TERN_SECTION_BLOBS].len;
    for (int i = 0; i < nlayers && !st; i++) {
        p = d + sec[TERN_SECTION_LAYERS].off + (size_t)i * TERN_LAY_SIZE;
        tern_qlayer *L = &m->layers[i];
        const uint32_t um = get_u32(p + TERN_LAY_UNIFORM);
        const uint64_t boff = get_u64(p + TERN_LAY_BLOB_OFFSET), blength = get_u64(p + TERN_LAY_BLOB_LENGTH);
        blob_layout b;
        layout_blob(m, L, has_padv[i], um, &b);
        uint32_t present = 0;
        for (int a = 0; a < TERN_ARR_COUNT; a++)
            if (b.count[a]) present |= 1u << a;
#define LERR(...) (st = layer_err(nm, i, L, __VA_ARGS__))
        if (um & ~(present & UNIFORM_OK)) { LERR("uniform-array flags 0x%x name arrays this layer cannot have", um); break; }
        if (boff % TERN_BLOB_ALIGN) { LERR("blob offset %llu not a multiple of %d", (unsigned long long)boff, TERN_BLOB_ALIGN); break; }
        if (boff > blen || blength > blen - boff) {
            LERR("blob %llu..+%llu outside the BLOBS section (%llu bytes)", (unsigned long long)boff,
                 (unsigned long long)blength, (unsigned long long)blen);
            break;
        }
        if (blength != b.total) {
            LERR("blob is %llu bytes, its arrays need %zu", (unsigned long long)blength, b.total);
            break;
        }
        const uint8_t *bp = blobs + boff;
        size_t pos = 0;
        for (int a = 0; a < TERN_ARR_COUNT && !st; a++) {
            if (!b.count[a]) continue;
            if (!all_zero(bp + pos, b.off[a] - pos)) { LERR("non-zero padding before the %s array", arr_name[a]); break; }
            pos = b.off[a] + b.bytes[a];
            void *arr = tern_malloc((size_t)b.count[a] * (size_t)arr_esize[a]);
            if (!arr) { st = TERN_STATUS_NOMEM; break; }
            arr_set(L, a, arr);
            const uint8_t *src = bp + b.off[a];
            if (a == TERN_ARR_W) {
                const int64_t bad = unpack_codes(L->conv.wtype, src, b.count[a], arr);
                if (bad >= 0)
                    LERR("packed weight byte %lld (0x%02x) is not a valid %s code group", (long long)bad, src[bad],
                         L->conv.wtype == TERN_WTYPE_TERNARY ? "ternary (5 trits)" : L->conv.wtype == TERN_WTYPE_INT4 ? "4-bit" : "8-bit");
                continue;
            }
            const int uni = (um >> a) & 1;
            for (int64_t k = 0; k < b.count[a]; k++)
                arr_put(arr, a, k, get_le(src + (uni ? 0 : (size_t)k * arr_esize[a]), arr_esize[a]));
        }
#undef LERR
    }
    free(has_padv);
    if (!st) st = tern_qmodel_check(m, nm, 1);
    return st;
}

enum tern_status tern_qmodel_load_mem(const uint8_t *data, size_t len, const char *name, tern_qmodel **out) {
    if (!name) name = "<memory>";
    if (!out) return tern_errorf(TERN_STATUS_INVALID_ARG, "%s: tern_qmodel_load_mem: no output pointer", name);
    *out = NULL;
    if (!data && len) return tern_errorf(TERN_STATUS_INVALID_ARG, "%s: no data", name);
    reader r = {data ? data : (const uint8_t *)"", len, name};
    tern_qmodel *m = NULL;
    enum tern_status st = read_model(&r, &m);
    if (st) {
        if (st == TERN_STATUS_NOMEM) tern_error_prefix(st, "%s", name);
        tern_qmodel_free(m);
        return st;
    }
    *out = m;
    return TERN_STATUS_OK;
}

enum tern_status tern_qmodel_load(const char *path, tern_qmodel **out) {
    if (out) *out = NULL;
    if (!path || !out) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_qmodel_load: no path or output pointer");
    /* tern_read_file would take a directory's size for a huge file: say what it is instead */
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return tern_errorf(TERN_STATUS_IO, "%s: not a regular file", path);
    uint8_t *data;
    size_t len;
    enum tern_status st = tern_read_file(path, &data, &len);
    if (st) return st;
    st = tern_qmodel_load_mem(data, len, path, out);
    free(data);
    return st;
}
