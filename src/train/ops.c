/* Training kernels (ops.h): CNHW float tensors, im2col + OpenBLAS SGEMM for convolutions. */
#include "train/ops.h"
#include <cblas.h>
#include <math.h>
#include <string.h>

static tern_pool *g_pool;
void tt_set_pool(tern_pool *p) { g_pool = p; }

static void par(void (*fn)(void *, int, int), void *arg, int n) {
    if (g_pool && tern_pool_size(g_pool) > 1 && n > 1) tern_pool_run(g_pool, fn, arg, n);
    else
        for (int i = 0; i < n; i++) fn(arg, i, 0);
}

/* ---------------- convolution ---------------- */

int tt_conv_geom(tt_conv *p) {
    if (p->cin < 1 || p->cout < 1 || p->kh < 1 || p->kw < 1 || p->sh < 1 || p->sw < 1 || p->B < 1) return 0;
    int eh = p->H + p->pt + p->pb - p->kh, ew = p->W + p->pl + p->pr - p->kw;
    if (eh < 0 || ew < 0) return 0;
    p->Ho = eh / p->sh + 1;
    p->Wo = ew / p->sw + 1;
    return 1;
}

size_t tt_conv_col_size(const tt_conv *p) {
    return (size_t)p->cin * p->kh * p->kw * (size_t)p->B * p->Ho * p->Wo;
}

typedef struct {
    const tt_conv *p;
    const float *x;
    float *col, *dx;
} colarg;

static void im2col_row(void *v, int r, int tid) {
    const colarg *a = v;
    const tt_conv *p = a->p;
    int ci = r / (p->kh * p->kw), ky = r / p->kw % p->kh, kx = r % p->kw;
    size_t N = (size_t)p->B * p->Ho * p->Wo, plane = (size_t)p->H * p->W;
    float *dst = a->col + (size_t)r * N;
    for (int b = 0; b < p->B; b++) {
        const float *src = a->x + ((size_t)ci * p->B + b) * plane;
        for (int oy = 0; oy < p->Ho; oy++) {
            int iy = oy * p->sh - p->pt + ky;
            float *d = dst + ((size_t)b * p->Ho + oy) * p->Wo;
            if (iy < 0 || iy >= p->H) { memset(d, 0, sizeof(float) * (size_t)p->Wo); continue; }
            const float *s = src + (size_t)iy * p->W;
            for (int ox = 0; ox < p->Wo; ox++) {
                int ix = ox * p->sw - p->pl + kx;
                d[ox] = ix >= 0 && ix < p->W ? s[ix] : 0.0f;
            }
        }
    }
}

/* One input channel: its kh*kw rows are added into dx[ci] in a fixed order. */
static void col2im_chan(void *v, int ci, int tid) {
    const colarg *a = v;
    const tt_conv *p = a->p;
    size_t N = (size_t)p->B * p->Ho * p->Wo, plane = (size_t)p->H * p->W;
    for (int ky = 0; ky < p->kh; ky++)
        for (int kx = 0; kx < p->kw; kx++) {
            const float *src = a->col + ((size_t)(ci * p->kh + ky) * p->kw + kx) * N;
            for (int b = 0; b < p->B; b++) {
                float *dst = a->dx + ((size_t)ci * p->B + b) * plane;
                for (int oy = 0; oy < p->Ho; oy++) {
                    int iy = oy * p->sh - p->pt + ky;
                    if (iy < 0 || iy >= p->H) continue;
                    const float *s = src + ((size_t)b * p->Ho + oy) * p->Wo;
                    float *d = dst + (size_t)iy * p->W;
                    for (int ox = 0; ox < p->Wo; ox++) {
                        int ix = ox * p->sw - p->pl + kx;
                        if (ix >= 0 && ix < p->W) d[ix] += s[ox];
                    }
                }
            }
        }
}

void tt_conv_fwd(const tt_conv *p, const float *x, const float *w, const float *bias, float *y, float *col) {
    int K = p->cin * p->kh * p->kw, N = p->B * p->Ho * p->Wo;
    colarg a = {p, x, col, NULL};
    par(im2col_row, &a, K);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->cout, N, K, 1.0f, w, K, col, N, 0.0f, y, N);
    if (bias)
        for (int o = 0; o < p->cout; o++) {
            float bv = bias[o], *yo = y + (size_t)o * N;
            for (int i = 0; i < N; i++) yo[i] += bv;
        }
}

void tt_conv_bwd(const tt_conv *p, const float *x, const float *w, const float *dy, float *dx, float *dw,
                 float *db, float *col) {
    int K = p->cin * p->kh * p->kw, N = p->B * p->Ho * p->Wo;
    colarg a = {p, x, col, dx};
    par(im2col_row, &a, K);
    /* dw[cout][K] = dy[cout][N] . col[K][N]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->cout, K, N, 1.0f, dy, N, col, N, 0.0f, dw, K);
    if (db)
        for (int o = 0; o < p->cout; o++) {
            double s = 0;
            const float *d = dy + (size_t)o * N;
            for (int i = 0; i < N; i++) s += d[i];
            db[o] = (float)s;
        }
    if (!dx) return;
    /* dcol[K][N] = w^T . dy, then scattered back (reusing col) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, p->cout, 1.0f, w, K, dy, N, 0.0f, col, N);
    par(col2im_chan, &a, p->cin);
}

/* ---------------- element-wise ---------------- */

void tt_relu_fwd(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f;
}
void tt_relu_bwd(const float *y, const float *dy, float *dx, size_t n) {
    for (size_t i = 0; i < n; i++) dx[i] += y[i] > 0 ? dy[i] : 0.0f;
}
void tt_leaky_fwd(const float *x, float *y, size_t n, float alpha) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : alpha * x[i];
}
void tt_leaky_bwd(const float *x, const float *dy, float *dx, size_t n, float alpha) {
    for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0 ? dy[i] : alpha * dy[i];
}
void tt_add_fwd(const float *a, const float *b, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
void tt_add_bwd(const float *dy, float *da, float *db, size_t n) {
    for (size_t i = 0; i < n; i++) da[i] += dy[i];
    for (size_t i = 0; i < n; i++) db[i] += dy[i];
}

/* ---------------- pools ---------------- */

typedef struct {
    const tt_pool *p;
    const float *x, *dy;
    float *y, *dx;
} poolarg;

static void maxpool_fwd_plane(void *v, int pl, int tid) {
    const poolarg *a = v;
    const tt_pool *p = a->p;
    const float *x = a->x + (size_t)pl * p->h * p->w;
    float *y = a->y + (size_t)pl * p->ho * p->wo;
    for (int oy = 0; oy < p->ho; oy++)
        for (int ox = 0; ox < p->wo; ox++) {
            float m = -INFINITY;
            for (int ky = 0; ky < p->kh; ky++) {
                int iy = oy * p->sh - p->pt + ky;
                if (iy < 0 || iy >= p->h) continue;
                for (int kx = 0; kx < p->kw; kx++) {
                    int ix = ox * p->sw - p->pl + kx;
                    if (ix >= 0 && ix < p->w && x[iy * p->w + ix] > m) m = x[iy * p->w + ix];
                }
            }
            y[oy * p->wo + ox] = m;
        }
}

static void maxpool_bwd_plane(void *v, int pl, int tid) {
    const poolarg *a = v;
    const tt_pool *p = a->p;
    const float *x = a->x + (size_t)pl * p->h * p->w, *dy = a->dy + (size_t)pl * p->ho * p->wo;
    float *dx = a->dx + (size_t)pl * p->h * p->w;
    for (int oy = 0; oy < p->ho; oy++)
        for (int ox = 0; ox < p->wo; ox++) {
            float m = -INFINITY;
            int at = -1;
            for (int ky = 0; ky < p->kh; ky++) {
                int iy = oy * p->sh - p->pt + ky;
                if (iy < 0 || iy >= p->h) continue;
                for (int kx = 0; kx < p->kw; kx++) {
                    int ix = ox * p->sw - p->pl + kx;
                    if (ix >= 0 && ix < p->w && x[iy * p->w + ix] > m) { m = x[iy * p->w + ix]; at = iy * p->w + ix; }
                }
            }
            if (at >= 0) dx[at] += dy[oy * p->wo + ox];
        }
}

static int avg_count(const tt_pool *p, int oy, int ox, int *y0, int *y1, int *x0, int *x1) {
    int ys = oy * p->sh - p->pt, xs = ox * p->sw - p->pl;
    int ye = ys + p->kh, xe = xs + p->kw;
    *y0 = ys < 0 ? 0 : ys; *y1 = ye > p->h ? p->h : ye;
    *x0 = xs < 0 ? 0 : xs; *x1 = xe > p->w ? p->w : xe;
    if (p->count_include_pad) {
        int ye2 = ye > p->h + p->pb ? p->h + p->pb : ye, xe2 = xe > p->w + p->pr ? p->w + p->pr : xe;
        return (ye2 - ys) * (xe2 - xs);
    }
    return (*y1 - *y0) * (*x1 - *x0);
}

static void avgpool_fwd_plane(void *v, int pl, int tid) {
    const poolarg *a = v;
    const tt_pool *p = a->p;
    const float *x = a->x + (size_t)pl * p->h * p->w;
    float *y = a->y + (size_t)pl * p->ho * p->wo;
    for (int oy = 0; oy < p->ho; oy++)
        for (int ox = 0; ox < p->wo; ox++) {
            int y0, y1, x0, x1, n = avg_count(p, oy, ox, &y0, &y1, &x0, &x1);
            float s = 0;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++) s += x[iy * p->w + ix];
            y[oy * p->wo + ox] = n > 0 ? s / (float)n : 0.0f;
        }
}

static void avgpool_bwd_plane(void *v, int pl, int tid) {
    const poolarg *a = v;
    const tt_pool *p = a->p;
    const float *dy = a->dy + (size_t)pl * p->ho * p->wo;
    float *dx = a->dx + (size_t)pl * p->h * p->w;
    for (int oy = 0; oy < p->ho; oy++)
        for (int ox = 0; ox < p->wo; ox++) {
            int y0, y1, x0, x1, n = avg_count(p, oy, ox, &y0, &y1, &x0, &x1);
            if (n <= 0) continue;
            float g = dy[oy * p->wo + ox] / (float)n;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++) dx[iy * p->w + ix] += g;
        }
}

void tt_maxpool_fwd(const tt_pool *p, const float *x, float *y) {
    poolarg a = {p, x, NULL, y, NULL};
    par(maxpool_fwd_plane, &a, p->nplanes);
}
void tt_maxpool_bwd(const tt_pool *p, const float *x, const float *dy, float *dx) {
    poolarg a = {p, x, dy, NULL, dx};
    par(maxpool_bwd_plane, &a, p->nplanes);
}
void tt_avgpool_fwd(const tt_pool *p, const float *x, float *y) {
    poolarg a = {p, x, NULL, y, NULL};
    par(avgpool_fwd_plane, &a, p->nplanes);
}
void tt_avgpool_bwd(const tt_pool *p, const float *dy, float *dx) {
    poolarg a = {p, NULL, dy, NULL, dx};
    par(avgpool_bwd_plane, &a, p->nplanes);
}

void tt_gap_fwd(const float *x, float *y, int nplanes, int hw) {
    for (int i = 0; i < nplanes; i++) {
        double s = 0;
        for (int j = 0; j < hw; j++) s += x[(size_t)i * hw + j];
        y[i] = (float)(s / hw);
    }
}
void tt_gap_bwd(const float *dy, float *dx, int nplanes, int hw) {
    for (int i = 0; i < nplanes; i++) {
        float g = dy[i] / (float)hw;
        for (int j = 0; j < hw; j++) dx[(size_t)i * hw + j] += g;
    }
}

/* ---------------- slice / pad ---------------- */

void tt_slice_fwd(const tt_slice *s, const float *x, float *y) {
    for (int c = 0; c < s->yc; c++)
        for (int b = 0; b < s->B; b++) {
            const float *xp = x + ((size_t)(s->c0 + c * s->stc) * s->B + b) * s->H * s->W;
            float *yp = y + ((size_t)c * s->B + b) * s->yh * s->yw;
            for (int i = 0; i < s->yh; i++)
                for (int j = 0; j < s->yw; j++) yp[i * s->yw + j] = xp[(size_t)(s->h0 + i * s->sth) * s->W + s->w0 + j * s->stw];
        }
}
void tt_slice_bwd(const tt_slice *s, const float *dy, float *dx) {
    for (int c = 0; c < s->yc; c++)
        for (int b = 0; b < s->B; b++) {
            float *xp = dx + ((size_t)(s->c0 + c * s->stc) * s->B + b) * s->H * s->W;
            const float *yp = dy + ((size_t)c * s->B + b) * s->yh * s->yw;
            for (int i = 0; i < s->yh; i++)
                for (int j = 0; j < s->yw; j++) xp[(size_t)(s->h0 + i * s->sth) * s->W + s->w0 + j * s->stw] += yp[i * s->yw + j];
        }
}

void tt_pad_fwd(const tt_pad *p, const float *x, float *y) {
    int YC = p->C + p->c0 + p->c1, YH = p->H + p->h0 + p->h1, YW = p->W + p->w0 + p->w1;
    memset(y, 0, sizeof(float) * (size_t)YC * p->B * YH * YW);
    for (int c = 0; c < p->C; c++)
        for (int b = 0; b < p->B; b++) {
            const float *xp = x + ((size_t)c * p->B + b) * p->H * p->W;
            float *yp = y + ((size_t)(c + p->c0) * p->B + b) * YH * YW;
            for (int i = 0; i < p->H; i++) memcpy(yp + (size_t)(i + p->h0) * YW + p->w0, xp + (size_t)i * p->W, sizeof(float) * (size_t)p->W);
        }
}
void tt_pad_bwd(const tt_pad *p, const float *dy, float *dx) {
    int YH = p->H + p->h0 + p->h1, YW = p->W + p->w0 + p->w1;
    for (int c = 0; c < p->C; c++)
        for (int b = 0; b < p->B; b++) {
            float *xp = dx + ((size_t)c * p->B + b) * p->H * p->W;
            const float *yp = dy + ((size_t)(c + p->c0) * p->B + b) * YH * YW;
            for (int i = 0; i < p->H; i++)
                for (int j = 0; j < p->W; j++) xp[(size_t)i * p->W + j] += yp[(size_t)(i + p->h0) * YW + p->w0 + j];
        }
}

/* ---------------- fake quantisation ---------------- */

void tt_fq_fwd(float *x, size_t n, int exp, int is_signed) {
    float sc = ldexpf(1.0f, exp), inv = ldexpf(1.0f, -exp);
    float lo = is_signed ? -128.0f : 0.0f, hi = is_signed ? 127.0f : 255.0f;
    for (size_t i = 0; i < n; i++) {
        float v = nearbyintf(x[i] * sc);
        v = v < lo ? lo : v > hi ? hi : v;
        x[i] = v * inv;
    }
}

void tt_fq_bwd(const float *y, float *dy, size_t n, int exp, int is_signed) {
    float hi = ldexpf(is_signed ? 127.0f : 255.0f, -exp), lo = ldexpf(-128.0f, -exp);
    for (size_t i = 0; i < n; i++)
        if (y[i] >= hi || (is_signed && y[i] <= lo)) dy[i] = 0.0f;
}

/* ---------------- loss ---------------- */

double tt_softmax_ce(const float *logits, const int *labels, int K, int B, float *dlogits, int *correct) {
    return tt_softmax_ce_soft(logits, labels, NULL, 0, K, B, dlogits, correct);
}

double tt_softmax_ce_soft(const float *logits, const int *labels, const float *teacher, float alpha, int K, int B, float *dlogits, int *correct) {
    double loss = 0;
    int ok = 0;
    for (int b = 0; b < B; b++) {
        double m = -INFINITY;
        int am = 0;
        for (int k = 0; k < K; k++)
            if (logits[(size_t)k * B + b] > m) { m = logits[(size_t)k * B + b]; am = k; }
        double s = 0;
        for (int k = 0; k < K; k++) s += exp(logits[(size_t)k * B + b] - m);
        double lse = m + log(s);
        int lab = labels[b];
        ok += am == lab;
        /* target: (1 - alpha) one-hot + alpha softmax(teacher) */
        double tm = -INFINITY, ts = 0;
        if (teacher) {
            for (int k = 0; k < K; k++) tm = teacher[(size_t)k * B + b] > tm ? teacher[(size_t)k * B + b] : tm;
            for (int k = 0; k < K; k++) ts += exp(teacher[(size_t)k * B + b] - tm);
        }
        for (int k = 0; k < K; k++) {
            double tk = (1.0 - (teacher ? alpha : 0)) * (k == lab);
            if (teacher) tk += alpha * exp(teacher[(size_t)k * B + b] - tm) / ts;
            double lp = logits[(size_t)k * B + b] - lse;
            if (tk > 0) loss -= tk * lp;
            if (dlogits) dlogits[(size_t)k * B + b] = (float)((exp(lp) - tk) / B);
        }
    }
    if (correct) *correct = ok;
    return loss / B;
}
