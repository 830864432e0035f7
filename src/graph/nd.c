/* N-dimensional element shuffles and broadcasting, on raw bytes. Used to fold constant
 * subgraphs at import and by the FP32 executor's Slice/Pad/Concat/Add/Mul. */
#include "graph/graph.h"
#include <string.h>

static void strides_of(const int64_t *d, int n, int64_t *st) {
    int64_t s = 1;
    for (int i = n - 1; i >= 0; i--) {
        st[i] = s;
        s *= d[i];
    }
}

static int64_t numel(const int64_t *d, int n) {
    int64_t s = 1;
    for (int i = 0; i < n; i++) s *= d[i];
    return s;
}

/* Walk every index of y (shape yd) keeping a source offset via per-dim source strides. */
#define ND_WALK(ndim, yd, sst, base, BODY)                                         \
    do {                                                                           \
        int64_t idx_[TERN_MAX_DIMS] = {0}, off_ = (base), total_ = numel(yd, ndim); \
        for (int64_t k_ = 0; k_ < total_; k_++) {                                  \
            int64_t src = off_;                                                    \
            BODY;                                                                  \
            for (int d_ = (ndim) - 1; d_ >= 0; d_--) {                             \
                off_ += (sst)[d_];                                                 \
                if (++idx_[d_] < (yd)[d_]) break;                                  \
                off_ -= (sst)[d_] * (yd)[d_];                                      \
                idx_[d_] = 0;                                                      \
            }                                                                      \
        }                                                                          \
    } while (0)

void tern_nd_slice(const void *x, const int64_t *xd, int ndim, int esize, const int64_t *start,
                   const int64_t *step, const int64_t *yd, void *y) {
    int64_t xs[TERN_MAX_DIMS], ss[TERN_MAX_DIMS], base = 0;
    strides_of(xd, ndim, xs);
    for (int i = 0; i < ndim; i++) {
        ss[i] = xs[i] * step[i];
        base += start[i] * xs[i];
    }
    const char *xc = x;
    char *yc = y;
    ND_WALK(ndim, yd, ss, base, { memcpy(yc, xc + src * esize, (size_t)esize); yc += esize; });
}

void tern_nd_transpose(const void *x, const int64_t *xd, int ndim, int esize, const int64_t *perm, void *y) {
    int64_t xs[TERN_MAX_DIMS], ss[TERN_MAX_DIMS], yd[TERN_MAX_DIMS];
    strides_of(xd, ndim, xs);
    for (int i = 0; i < ndim; i++) {
        yd[i] = xd[perm[i]];
        ss[i] = xs[perm[i]];
    }
    const char *xc = x;
    char *yc = y;
    ND_WALK(ndim, yd, ss, 0, { memcpy(yc, xc + src * esize, (size_t)esize); yc += esize; });
}

void tern_nd_pad(const void *x, const int64_t *xd, int ndim, int esize, const int64_t *begin,
                 const int64_t *yd, const void *fill, void *y) {
    int64_t n = numel(yd, ndim), ys[TERN_MAX_DIMS], off = 0;
    char *yc = y;
    for (int64_t i = 0; i < n; i++) memcpy(yc + i * esize, fill, (size_t)esize);
    strides_of(yd, ndim, ys);
    for (int i = 0; i < ndim; i++) off += begin[i] * ys[i];
    /* copy x into y at offset: walk x's index space with y's strides as destination */
    const char *xc = x;
    ND_WALK(ndim, xd, ys, off, { memcpy(yc + src * esize, xc, (size_t)esize); xc += esize; });
}

void tern_nd_concat_part(const void *x, const int64_t *xd, int ndim, int esize, int axis, int64_t at,
                         const int64_t *yd, void *y) {
    int64_t outer = numel(xd, axis), inner = numel(xd + axis + 1, ndim - axis - 1) * esize;
    int64_t xrow = xd[axis] * inner, yrow = yd[axis] * inner;
    const char *xc = x;
    char *yc = (char *)y + at * inner;
    for (int64_t o = 0; o < outer; o++) memcpy(yc + o * yrow, xc + o * xrow, (size_t)xrow);
}

void tern_nd_concat(const void *const *x, const int64_t *const *xd, int nx, int ndim, int esize, int axis, void *y) {
    int64_t outer = numel(xd[0], axis);
    char *yc = y;
    for (int64_t o = 0; o < outer; o++)
        for (int i = 0; i < nx; i++) {
            int64_t inner = numel(xd[i] + axis, ndim - axis) * esize;
            memcpy(yc, (const char *)x[i] + o * inner, (size_t)inner);
            yc += inner;
        }
}

int tern_nd_bcast_shape(const int64_t *ad, int an, const int64_t *bd, int bn, int64_t *yd) {
    int n = an > bn ? an : bn;
    for (int i = 0; i < n; i++) {
        int64_t a = i - (n - an) >= 0 ? ad[i - (n - an)] : 1;
        int64_t b = i - (n - bn) >= 0 ? bd[i - (n - bn)] : 1;
        if (a != b && a != 1 && b != 1) return -1;
        yd[i] = a == 1 ? b : a;
    }
    return n;
}

void tern_nd_bcast_strides(const int64_t *xd, int xndim, const int64_t *yd, int yndim, int64_t *st) {
    int64_t xs[TERN_MAX_DIMS];
    strides_of(xd, xndim, xs);
    for (int i = 0; i < yndim; i++) {
        int j = i - (yndim - xndim);
        st[i] = (j < 0 || xd[j] == 1) ? 0 : xs[j];
    }
    (void)yd;
}

void tern_nd_binary(int op, int dtype, const void *a, const int64_t *ad, int an, const void *b,
                    const int64_t *bd, int bn, const int64_t *yd, int yn, void *y) {
    int64_t sa[TERN_MAX_DIMS], sb[TERN_MAX_DIMS];
    tern_nd_bcast_strides(ad, an, yd, yn, sa);
    tern_nd_bcast_strides(bd, bn, yd, yn, sb);
    int64_t total = numel(yd, yn);
    /* fast path: same shape, or b a per-channel/scalar vector handled by the generic walk */
    int64_t ia[TERN_MAX_DIMS] = {0}, oa = 0, ob = 0;
    for (int64_t k = 0; k < total; k++) {
        if (dtype == TERN_DTYPE_I64) {
            int64_t u = ((const int64_t *)a)[oa], v = ((const int64_t *)b)[ob], r;
            switch (op) { /* shape arithmetic on constants: wraps (two's complement) rather than UB */
            case TERN_OP_ADD: r = (int64_t)((uint64_t)u + (uint64_t)v); break;
            case TERN_OP_SUB: r = (int64_t)((uint64_t)u - (uint64_t)v); break;
            case TERN_OP_MUL: r = (int64_t)((uint64_t)u * (uint64_t)v); break;
            default: r = v == 0 || (v == -1 && u == INT64_MIN) ? 0 : u / v; break;
            }
            ((int64_t *)y)[k] = r;
        } else {
            float u = ((const float *)a)[oa], v = ((const float *)b)[ob], r;
            switch (op) {
            case TERN_OP_ADD: r = u + v; break;
            case TERN_OP_SUB: r = u - v; break;
            case TERN_OP_MUL: r = u * v; break;
            default: r = u / v; break;
            }
            ((float *)y)[k] = r;
        }
        for (int d = yn - 1; d >= 0; d--) {
            oa += sa[d];
            ob += sb[d];
            if (++ia[d] < yd[d]) break;
            oa -= sa[d] * yd[d];
            ob -= sb[d] * yd[d];
            ia[d] = 0;
        }
    }
}
