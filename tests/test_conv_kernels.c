/* Conv kernels: the reference against hand-computed values and an independent evaluation of
 * kernels.h's formula, then every fast kernel bit for bit against the reference over a sweep of
 * awkward shapes (odd and tiny channel counts, N that does not divide cin, all kernel sizes,
 * strides, asymmetric padding with per-channel pad values, dilation, groups, arbitrary row
 * ranges, signed and unsigned input, all three weight types, saturating outputs).
 * A variant the CPU lacks is skipped, saying so. TERN_TEST_SEED=n changes the random cases. */
#include "kernels/kernels.h"
#include "check.h"
#include <math.h>
#include <stdint.h>

/* ---- deterministic random numbers ---- */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int rnd(int n) { return (int)(rnd64() % (uint64_t)n); }          /* 0..n-1 */
static int rnd_in(int lo, int hi) { return lo + rnd(hi - lo + 1); }     /* lo..hi */
static int pick(const int *v, int n) { return v[rnd(n)]; }

/* ---- a conv case: the qconv plus the arrays it points to ---- */
typedef struct conv_case {
    tern_qconv c;
    int h, w, batch;
    int8_t *w8;
    int16_t *cs;
    int32_t *bias, *mpos, *mneg;
    int8_t *shift;
    uint8_t *padv;
    uint8_t *x;            /* [batch][h][w][cin] */
    char desc[256];
} conv_case;

typedef struct case_opts {
    int cin, cout, groups, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    int wtype, cluster;   /* cluster <= 0: all */
    int in_signed, pad_nonzero, h, w, batch;
    int extreme;          /* 0 random; 1: all codes +max and inputs 255 (s16 bounds); 2: -max */
    int act;              /* 0 linear signed out, 1 ReLU u8, 2 LeakyReLU s8, 3 clip [0,k] */
} case_opts;

/* The input must be at least as large as the dilated kernel minus the padding. */
static void fix_hw(case_opts *op) {
    op->h = TERN_MAX(op->h, (op->kh - 1) * op->dh + 1 - op->pt - op->pb);
    op->w = TERN_MAX(op->w, (op->kw - 1) * op->dw + 1 - op->pl - op->pr);
    op->h = TERN_MAX(op->h, 1);
    op->w = TERN_MAX(op->w, 1);
}

static int max_code(int wtype) { return wtype == TERN_WTYPE_TERNARY ? 1 : wtype == TERN_WTYPE_INT4 ? 7 : 127; }

static void case_free(conv_case *cc) {
    free(cc->w8); free(cc->cs); free(cc->bias); free(cc->mpos); free(cc->mneg);
    free(cc->shift); free(cc->padv); free(cc->x);
    memset(cc, 0, sizeof *cc);
}

static int64_t floordiv(int64_t a, int64_t b) {   /* b > 0 */
    int64_t q = a / b;
    return (q * b > a) ? q - 1 : q;
}

/* Independent evaluation of the accumulator: one int64 sum of cscale*w*x terms per output, the
 * input fetched through a differently written index computation; no per-cluster partial sums. */
static int64_t direct_acc(const conv_case *cc, const uint8_t *x, int oy, int ox, int o) {
    const tern_qconv *c = &cc->c;
    const int cing = c->cin / c->groups, coutg = c->cout / c->groups, ncl = tern_qconv_nclusters(c);
    int64_t acc = c->bias[o];
    for (int ky = 0; ky < c->kh; ky++)
        for (int kx = 0; kx < c->kw; kx++) {
            const long iy = (long)oy * c->sh + (long)ky * c->dh - c->pad_t;
            const long ix = (long)ox * c->sw + (long)kx * c->dw - c->pad_l;
            const int in = iy >= 0 && ix >= 0 && iy < cc->h && ix < cc->w;
            for (int ci = 0; ci < cing; ci++) {
                const int chan = (o / coutg) * cing + ci;
                const uint8_t b = in ? x[(iy * cc->w + ix) * c->cin + chan] : (c->pad_value ? c->pad_value[chan] : 0);
                const int64_t xv = c->in_signed ? (b >= 128 ? (int64_t)b - 256 : b) : b;
                const int64_t wv = c->w[((int64_t)o * cing + ci) * c->kh * c->kw + ky * c->kw + kx];
                acc += (int64_t)c->cscale[(int64_t)o * ncl + ci / c->cluster] * wv * xv;
            }
        }
    return acc;
}

/* Independent requantisation: exact floor divisions and float64 rounding instead of shifts. */
static int direct_requant(int64_t acc, int32_t mpos, int32_t mneg, int shift, int qmin, int qmax) {
    const int64_t p = acc * (acc < 0 ? mneg : mpos);
    int64_t v = floordiv(p + (1ll << 30), 1ll << 31);
    if (shift > 0) v = (int64_t)floor(ldexp((double)v, -shift) + 0.5);   /* exact: |v| < 2^52 */
    return v < qmin ? qmin : v > qmax ? qmax : (int)v;
}

static void case_make(conv_case *cc, const case_opts *op) {
    memset(cc, 0, sizeof *cc);
    tern_qconv *c = &cc->c;
    c->cin = op->cin; c->cout = op->cout; c->groups = op->groups;
    c->kh = op->kh; c->kw = op->kw; c->sh = op->sh; c->sw = op->sw; c->dh = op->dh; c->dw = op->dw;
    c->pad_t = op->pt; c->pad_l = op->pl; c->pad_b = op->pb; c->pad_r = op->pr;
    c->wtype = op->wtype;
    const int cing = c->cin / c->groups;
    c->cluster = op->cluster <= 0 || op->cluster > cing ? cing : op->cluster;
    c->in_signed = op->in_signed;
    cc->h = op->h; cc->w = op->w; cc->batch = op->batch;
    const int khw = c->kh * c->kw, ncl = tern_qconv_nclusters(c), mc = max_code(c->wtype);
    const size_t nw = (size_t)c->cout * cing * khw;
    cc->w8 = malloc(nw);
    cc->cs = malloc(sizeof(int16_t) * c->cout * ncl);
    cc->bias = malloc(sizeof(int32_t) * c->cout);
    cc->mpos = malloc(sizeof(int32_t) * c->cout);
    cc->mneg = malloc(sizeof(int32_t) * c->cout);
    cc->shift = malloc((size_t)c->cout);
    const size_t nx = (size_t)cc->batch * cc->h * cc->w * c->cin;
    cc->x = malloc(nx ? nx : 1);
    for (size_t i = 0; i < nw; i++) {
        int v;
        if (op->extreme) v = op->extreme == 1 ? mc : -mc;
        else if (c->wtype == TERN_WTYPE_TERNARY) v = rnd(3) - 1;
        else v = rnd(4) == 0 ? (rnd(2) ? mc : -mc) : rnd_in(-mc, mc);
        cc->w8[i] = (int8_t)v;
    }
    for (size_t i = 0; i < nx; i++) {
        int r = rnd(8);
        cc->x[i] = op->extreme ? (c->in_signed ? 127 : 255)   /* the largest byte after the kernels' +128 */
                 : r == 0 ? 255 : r == 1 ? 0 : r == 2 ? 128 : r == 3 ? 127 : (uint8_t)rnd(256);
    }
    if (op->pad_nonzero) {
        cc->padv = malloc((size_t)c->cin);
        for (int i = 0; i < c->cin; i++) cc->padv[i] = (uint8_t)rnd(256);
        c->pad_value = cc->padv;
    }
    /* cluster scales: up to the largest value keeping the worst case |acc| below 2^29 (the
     * contract lets kernels assume |acc| < 2^30); sometimes exactly that limit */
    const double worst = (double)cing * khw * mc * 255.0;
    int cmax = (int)fmin(32767.0, floor((double)(1 << 29) / worst));
    if (cmax < 1) cmax = 1;
    for (int i = 0; i < c->cout * ncl; i++) {
        const int r = rnd(6);
        cc->cs[i] = (int16_t)(op->extreme ? cmax : r == 0 ? cmax : r == 1 ? 0 : rnd_in(0, cmax));
    }
    c->w = cc->w8; c->cscale = cc->cs;
    /* bias: around the typical accumulator size, then requantisation chosen so outputs hit both
     * clamps */
    const double typ = sqrt((double)cing * khw) * mc * 128.0 * cmax * 0.5 + 1;
    for (int o = 0; o < c->cout; o++) cc->bias[o] = (int32_t)(rnd_in(-1000, 1000) / 1000.0 * fmin(typ, 1 << 28));
    c->bias = cc->bias;
    /* largest |acc| actually reached on image 0 sets the scale of the requantisation */
    int64_t amax = 1;
    const int oh = tern_qconv_out_h(c, cc->h), ow = tern_qconv_out_w(c, cc->w);
    c->mpos = cc->mpos; c->mneg = cc->mneg; c->shift = cc->shift;
    for (int oy = 0; oy < oh; oy += 1 + oh / 4)
        for (int ox = 0; ox < ow; ox += 1 + ow / 4)
            for (int o = 0; o < c->cout; o++) {
                const int64_t a = direct_acc(cc, cc->x, oy, ox, o);
                if (llabs(a) > amax) amax = llabs(a);
            }
    switch (op->act) {
    case 0: c->qmin = -128; c->qmax = 127; break;
    case 1: c->qmin = 0; c->qmax = 255; break;
    case 2: c->qmin = -128; c->qmax = 127; break;
    default: c->qmin = 0; c->qmax = rnd_in(1, 200); break;
    }
    for (int o = 0; o < c->cout; o++) {
        /* target: max |acc| maps to about 1.5 x the clamp, so some outputs saturate */
        int sh = rnd_in(0, 12);
        double m = 1.5 * 256.0 * ldexp(1.0, 31 + sh) / (double)amax * (0.5 + rnd(100) / 100.0);
        while (m > 2147483647.0 && sh > 0) { sh--; m /= 2; }
        if (m > 2147483647.0) m = 2147483647.0;
        if (rnd(20) == 0) { m = 2147483647.0; sh = rnd_in(20, 31); }
        cc->shift[o] = (int8_t)sh;
        cc->mpos[o] = (int32_t)m;
        cc->mneg[o] = op->act == 1 || op->act == 3 ? (rnd(2) ? 0 : (int32_t)m) :
                      op->act == 2 ? (int32_t)(m * 0.1) : (int32_t)m;
    }
    snprintf(cc->desc, sizeof cc->desc,
             "%s cin=%d cout=%d g=%d k=%dx%d s=%d,%d d=%d,%d pad=t%d,l%d,b%d,r%d N=%d %s in=%dx%d pad_value=%s act=%d q=[%d,%d]%s",
             c->wtype == 2 ? "t2" : c->wtype == 4 ? "w4" : "w8", c->cin, c->cout, c->groups, c->kh, c->kw,
             c->sh, c->sw, c->dh, c->dw, c->pad_t, c->pad_l, c->pad_b, c->pad_r, c->cluster,
             c->in_signed ? "s8" : "u8", cc->h, cc->w, c->pad_value ? "yes" : "no", op->act, c->qmin, c->qmax,
             op->extreme ? " extreme" : "");
}

/* Run kernel k over the whole batch, each image in randomly split row ranges, into y
 * ([batch][oh][ow][cout]); guards around scratch and output catch writes out of bounds. With
 * add (its r: the whole batch's residual), run_add instead. */
static int run_kernel_add(const tern_conv_kernel *k, const conv_case *cc, uint8_t *y, int split, const tern_qadd *add) {
    const tern_qconv *c = &cc->c;
    const int oh = tern_qconv_out_h(c, cc->h), ow = tern_qconv_out_w(c, cc->w);
    const size_t ysz = (size_t)oh * ow * c->cout, xsz = (size_t)cc->h * cc->w * c->cin;
    const size_t psz = k->packed_size(c), ssz = k->scratch_size(c, cc->w);
    uint8_t *packed = tern_aligned_alloc(psz + 64);
    uint8_t *scratch = tern_aligned_alloc(ssz + 64);
    int bad = 0;
    memset(packed + psz, 0x5A, 64);
    memset(scratch + ssz, 0x5A, 64);
    CHECK(k->pack(c, packed) == TERN_STATUS_OK, "%s: pack: %s", k->name, tern_last_error());
    for (int b = 0; b < cc->batch; b++) {
        /* a private copy of the image with exact bounds so ASan sees any over-read */
        uint8_t *xb = malloc(xsz ? xsz : 1);
        memcpy(xb, cc->x + b * xsz, xsz);
        uint8_t *yb = malloc(ysz + 16);
        memset(yb, 0xA5, ysz + 16);
        int oy = 0;
        uint8_t *rb = NULL;
        tern_qadd ab;
        if (add) {   /* the image's residual, also with exact bounds */
            ab = *add;
            rb = malloc(ysz ? ysz : 1);
            memcpy(rb, add->r + b * ysz, ysz);
            ab.r = rb;
        }
        while (oy < oh) {
            const int n = split ? rnd_in(1, oh - oy) : oh - oy;
            if (add) k->run_add(c, packed, xb, cc->h, cc->w, yb, oy, oy + n, scratch, &ab);
            else k->run(c, packed, xb, cc->h, cc->w, yb, oy, oy + n, scratch);
            oy += n;
        }
        free(rb);
        for (int i = 0; i < 16; i++) bad |= yb[ysz + i] != 0xA5;
        memcpy(y + b * ysz, yb, ysz);
        free(yb);
        free(xb);
    }
    for (int i = 0; i < 64; i++) bad |= packed[psz + i] != 0x5A || scratch[ssz + i] != 0x5A;
    free(packed);
    free(scratch);
    return bad;
}

static int run_kernel(const tern_conv_kernel *k, const conv_case *cc, uint8_t *y, int split) {
    return run_kernel_add(k, cc, y, split, NULL);
}

static int n_cases, n_fast;
static size_t n_out, n_at_min, n_at_max, n_between;   /* how often the clamps were hit */

/* Kernel selected at isa vs the reference over case cc; returns 0 if bit-exact. */
static int compare_case(const conv_case *cc, enum tern_isa isa) {
    const tern_qconv *c = &cc->c;
    const int oh = tern_qconv_out_h(c, cc->h), ow = tern_qconv_out_w(c, cc->w);
    const size_t ysz = (size_t)oh * ow * c->cout;
    const tern_conv_kernel *k = tern_conv_kernel_select(c, isa);
    uint8_t *yr = malloc(cc->batch * ysz + 1), *yk = malloc(cc->batch * ysz + 1);
    int bad = run_kernel(&tern_conv_ref, cc, yr, 0);
    CHECK(!bad, "reference wrote out of bounds: %s", cc->desc);
    bad = run_kernel(k, cc, yk, 1);
    CHECK(!bad, "%s wrote out of bounds: %s", k->name, cc->desc);
    n_cases++;
    n_fast += k != &tern_conv_ref;
    int nbad = 0;
    for (size_t i = 0; i < cc->batch * ysz; i++) {
        const int v = c->qmin < 0 ? (int8_t)yr[i] : yr[i];
        n_out++;
        n_at_min += v == c->qmin;
        n_at_max += v == c->qmax;
        n_between += v != c->qmin && v != c->qmax;
    }
    for (size_t i = 0; i < cc->batch * ysz; i++)
        if (yr[i] != yk[i]) {
            if (nbad++ < 3) {
                const size_t img = i / ysz, r = i % ysz;
                CHECK(0, "%s: %s: image %zu y=%zu x=%zu o=%zu: ref %d, kernel %d", k->name, cc->desc, img,
                      r / c->cout / ow, r / c->cout % ow, r % c->cout, yr[i], yk[i]);
            }
        }
    free(yr);
    free(yk);
    return bad || nbad;
}

/* tern_add's formula, written independently (int64, multiplications for the shifts) */
static int add_expect(int a, int b, int la, int lb, int rs, int qmin, int qmax) {
    int64_t s = (int64_t)a * ((int64_t)1 << la) + (int64_t)b * ((int64_t)1 << lb);
    if (rs > 0) s = floordiv(s + ((int64_t)1 << (rs - 1)), (int64_t)1 << rs);
    return (int)(s < qmin ? qmin : s > qmax ? qmax : s);
}

static size_t n_add_out, n_add_clamped;

/* run_add of the kernel selected at isa (and of the reference) against the reference conv
 * followed by the add formula, for random residuals and add parameters: small shifts (the
 * kernels' s16 path) and large ones (beyond it). Returns 0 if bit-exact. */
static int compare_add_case(const conv_case *cc, enum tern_isa isa) {
    const tern_qconv *c = &cc->c;
    if (c->out_wide) return 0;
    const int oh = tern_qconv_out_h(c, cc->h), ow = tern_qconv_out_w(c, cc->w);
    const size_t ysz = (size_t)oh * ow * c->cout, n = cc->batch * ysz;
    const tern_conv_kernel *k = tern_conv_kernel_select(c, isa);
    if (!k->run_add || !tern_conv_ref.run_add) { CHECK(0, "%s has no run_add", k->name); return 1; }
    uint8_t *yc = malloc(n + 1), *yr = malloc(n + 1), *yk = malloc(n + 1), *res = malloc(n + 1), *want = malloc(n + 1);
    for (size_t i = 0; i < n; i++) res[i] = (uint8_t)rnd(256);
    tern_qadd a = {res, rnd(2), 0, 0, 0, 0, 255};
    const int big = rnd(5) == 0;
    a.lc = big ? rnd_in(0, 23) : rnd_in(0, 3);
    a.lr = big ? rnd_in(0, 23) : rnd_in(0, 3);
    a.rs = big ? rnd_in(0, 30) : rnd_in(0, 5);
    /* the add is defined in int32: keep every sum and its rounding term inside it */
    while (255.0 * ldexp(1, a.lc) + 255.0 * ldexp(1, a.lr) + (a.rs ? ldexp(1, a.rs - 1) : 0) >= 2147483648.0) {
        if (a.rs > 24) a.rs--;
        else if (a.lc >= a.lr) a.lc--;
        else a.lr--;
    }
    switch (rnd(4)) {
    case 0: a.qmin = 0; a.qmax = 255; break;
    case 1: a.qmin = -128; a.qmax = 127; break;
    case 2: a.qmin = rnd_in(0, 100); a.qmax = rnd_in(a.qmin, 255); break;
    default: a.qmin = rnd_in(-128, 0); a.qmax = rnd_in(0, 127); break;
    }
    int bad = run_kernel(&tern_conv_ref, cc, yc, 0);
    for (size_t i = 0; i < n; i++) {
        const int cv = c->qmin < 0 ? (int8_t)yc[i] : yc[i], rv = a.r_signed ? (int8_t)res[i] : res[i];
        want[i] = (uint8_t)add_expect(cv, rv, a.lc, a.lr, a.rs, a.qmin, a.qmax);
        n_add_out++;
        n_add_clamped += (a.qmin < 0 ? (int8_t)want[i] : want[i]) == a.qmin || (a.qmin < 0 ? (int8_t)want[i] : want[i]) == a.qmax;
    }
    bad |= run_kernel_add(&tern_conv_ref, cc, yr, 1, &a);
    bad |= run_kernel_add(k, cc, yk, 1, &a);
    CHECK(!bad, "run_add wrote out of bounds: %s", cc->desc);
    int nbad = 0;
    for (size_t i = 0; i < n && nbad < 3; i++)
        if (yr[i] != want[i] || yk[i] != want[i]) {
            nbad++;
            CHECK(0, "%s run_add: %s add(lc %d lr %d rs %d r_signed %d q [%d,%d]) at %zu: want %d, ref %d, kernel %d", k->name,
                  cc->desc, a.lc, a.lr, a.rs, a.r_signed, a.qmin, a.qmax, i, want[i], yr[i], yk[i]);
        }
    free(yc); free(yr); free(yk); free(res); free(want);
    return bad || nbad;
}

/* ---- the reference itself ---- */

/* Hand-computed: 3x3 input, one channel, 2x2 ternary kernel, stride 1, no padding.
 *   x = 1 2 3 / 4 5 6 / 7 8 9, w = [+1 -1; 0 +1], cscale 3, bias 10.
 *   s(0,0) = 1-2+5 = 4, s(0,1) = 2-3+6 = 5, s(1,0) = 4-5+8 = 7, s(1,1) = 5-6+9 = 8
 *   acc = 10 + 3s = 22, 25, 31, 34; mpos = 2^30 (x0.5), shift 1:
 *   v = round_half_up(acc/2) = 11, 13 (12.5 up), 16 (15.5 up), 17; then (v+1)>>1 = 6, 7, 8, 9. */
static void test_ref_hand(void) {
    const uint8_t x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const int8_t w[4] = {1, -1, 0, 1};
    const int16_t cs[1] = {3};
    const int32_t bias[1] = {10}, mpos[1] = {1 << 30}, mneg[1] = {0};
    const int8_t shift[1] = {1};
    tern_qconv c = {.cin = 1, .cout = 1, .groups = 1, .kh = 2, .kw = 2, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                    .wtype = TERN_WTYPE_TERNARY, .cluster = 1, .w = w, .cscale = cs, .bias = bias,
                    .mpos = mpos, .mneg = mneg, .shift = shift, .qmin = 0, .qmax = 255};
    uint8_t y[4] = {0};
    tern_conv_ref.run(&c, NULL, x, 3, 3, y, 0, 2, NULL);
    const uint8_t want[4] = {6, 7, 8, 9};
    for (int i = 0; i < 4; i++) CHECK(y[i] == want[i], "hand case pixel %d: got %d want %d", i, y[i], want[i]);

    /* signed input, padding 1 with pad value -2 (byte 0xFE): a 1x1 kernel with stride 2 and
     * pad 1, so output (1,1) reads x(1,1) and every other output reads the pad.
     *   x = -3 (0xFD) at (1,1); w = -1; cscale 5; bias 0 -> acc(pad) = -1*-2*5 = 10, acc(1,1) = 15
     *   mpos 2^31-1 (~x1), mneg irrelevant; shift 0: v = 10, 15 (rounding (p+2^30)>>31 of
     *   10*(2^31-1) = 10*2^31 - 10 -> 10 - 10/2^31 + 0.5 floor -> 10). */
    const uint8_t xs[9] = {0, 0, 0, 0, 0xFD, 0, 0, 0, 0};
    const uint8_t pv[1] = {0xFE};
    const int8_t w1[1] = {-1};
    const int16_t cs1[1] = {5};
    const int32_t b1[1] = {0}, mp1[1] = {2147483647}, mn1[1] = {100};
    const int8_t sh1[1] = {0};
    tern_qconv c1 = {.cin = 1, .cout = 1, .groups = 1, .kh = 1, .kw = 1, .sh = 2, .sw = 2, .dh = 1, .dw = 1,
                     .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1, .wtype = TERN_WTYPE_TERNARY, .cluster = 1,
                     .w = w1, .cscale = cs1, .bias = b1, .mpos = mp1, .mneg = mn1, .shift = sh1,
                     .qmin = -128, .qmax = 127, .in_signed = 1, .pad_value = pv};
    /* out = (3+2-1)/2+1 = 3x3; reads rows/cols -1, 1, 3: only (1,1) is inside, all others pad */
    uint8_t y1[9];
    tern_conv_ref.run(&c1, NULL, xs, 3, 3, y1, 0, 3, NULL);
    CHECK((int8_t)y1[0] == 10, "pad tap: got %d want 10", (int8_t)y1[0]);
    CHECK((int8_t)y1[4] == 15, "signed tap: got %d want 15", (int8_t)y1[4]);
    for (int i = 0; i < 9; i++)
        if (i != 4) CHECK((int8_t)y1[i] == 10, "pad tap %d: got %d want 10", i, (int8_t)y1[i]);

    /* requantisation corner values, by hand: acc=-7, mneg=2^30 (x0.5): (-7*2^30+2^30)>>31 =
     * floor(-3) = -3; acc=-1: floor(-1/2+1/2) = 0; shift 3 of v=-12: floor(-12/8+1/2) = -1. */
    CHECK(tern_requant(-7, 0, 1 << 30, 0, -128, 127) == -3, "requant -7");
    CHECK(tern_requant(-1, 0, 1 << 30, 0, -128, 127) == 0, "requant -1");
    CHECK(tern_requant(-24, 0, 1 << 30, 3, -128, 127) == -1, "requant shift");
    CHECK(tern_requant(2000000000, 2147483647, 0, 0, 0, 255) == 255, "requant saturate high");
    CHECK(tern_requant(-2000000000, 0, 2147483647, 31, -128, 127) == -1, "requant shift 31");
}

/* The reference against the independent int64/float64 evaluation over random cases. */
static void test_ref_vs_direct(void) {
    static const int chans[] = {1, 3, 5, 7, 16, 17, 33};
    static const int ncl[] = {1, 2, 3, 4, 8, 16, 64, 0};
    static const int ks[] = {1, 3, 5, 7};
    int cases = 0, outs = 0;
    for (int it = 0; it < 120; it++) {
        case_opts op = {0};
        op.wtype = pick((const int[]){2, 4, 8}, 3);
        op.groups = rnd(5) == 0 ? pick((const int[]){1, 2, 3}, 3) : 1;
        op.cin = pick(chans, 7) * op.groups;
        op.cout = pick(chans, 7) * op.groups;
        op.kh = pick(ks, 4); op.kw = rnd(3) ? op.kh : pick(ks, 4);
        op.sh = rnd_in(1, 2); op.sw = rnd_in(1, 2); op.dh = rnd_in(1, 2); op.dw = rnd_in(1, 2);
        op.pt = rnd(op.kh); op.pb = rnd(op.kh); op.pl = rnd(op.kw); op.pr = rnd(op.kw);
        op.cluster = pick(ncl, 8);
        op.in_signed = rnd(2); op.pad_nonzero = rnd(2); op.act = rnd(4);
        op.h = rnd_in(1, 9); op.w = rnd_in(1, 9); op.batch = 1;
        fix_hw(&op);
        conv_case cc;
        case_make(&cc, &op);
        const tern_qconv *c = &cc.c;
        const int oh = tern_qconv_out_h(c, cc.h), ow = tern_qconv_out_w(c, cc.w);
        uint8_t *y = malloc((size_t)oh * ow * c->cout);
        tern_conv_ref.run(c, NULL, cc.x, cc.h, cc.w, y, 0, oh, NULL);
        int nbad = 0;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int o = 0; o < c->cout; o++) {
                    const int64_t a = direct_acc(&cc, cc.x, oy, ox, o);
                    CHECK(a > -(1ll << 31) && a < (1ll << 31), "case generator broke the acc bound: %s", cc.desc);
                    int want = direct_requant(a, c->mpos[o], c->mneg[o], c->shift[o], c->qmin, c->qmax);
                    const uint8_t got = y[((size_t)oy * ow + ox) * c->cout + o];
                    const int gv = c->qmin < 0 ? (int8_t)got : got;
                    if (gv != want && nbad++ < 3)
                        CHECK(0, "ref vs direct: %s: y=%d x=%d o=%d: ref %d, direct %d (acc %lld)", cc.desc, oy, ox, o,
                              gv, want, (long long)a);
                    outs++;
                }
        free(y);
        case_free(&cc);
        cases++;
    }
    fprintf(stderr, "  reference agrees with the direct evaluation on %d cases, %d outputs\n", cases, outs);
}

/* Wide (int32 logits) output: reference only; values equal the direct evaluation clamped to
 * int32 (qmin/qmax do not apply), and no ISA level selects anything but the reference. */
static void test_ref_wide(void) {
    int outs = 0, fast = 0, n_wide = 0;
    for (int it = 0; it < 40; it++) {
        case_opts op = {rnd_in(1, 40), rnd_in(1, 20), 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
                        pick((const int[]){2, 4, 8}, 3), pick((const int[]){1, 4, 0}, 3), rnd(2), 0, rnd_in(1, 3), rnd_in(1, 3), 1, 0, rnd(3)};
        if (it % 2) { op.kh = op.kw = 3; op.pt = op.pl = op.pb = op.pr = 1; op.h = op.w = 4; }   /* act: mneg = mpos, 0 or mpos/10 */
        conv_case cc;
        case_make(&cc, &op);
        tern_qconv *c = &cc.c;
        c->out_wide = 1;
        for (int o = 0; o < c->cout; o++) cc.shift[o] = (int8_t)rnd(4);   /* keep values beyond 8 bits */
        const int oh = tern_qconv_out_h(c, cc.h), ow = tern_qconv_out_w(c, cc.w);
        int32_t *y = malloc(sizeof(int32_t) * oh * ow * c->cout), *yk = malloc(sizeof(int32_t) * oh * ow * c->cout + 64);
        tern_conv_ref.run(c, NULL, cc.x, cc.h, cc.w, (uint8_t *)y, 0, oh, NULL);
        /* the fast kernels that take wide outputs, bit for bit (AVX2; VNNI selects AVX2 for them) */
        for (int isa = TERN_ISA_AVX2; isa <= TERN_ISA_AVX512VNNI && isa <= (int)tern_cpu_isa(); isa++) {
            const tern_conv_kernel *k = tern_conv_kernel_select(c, (enum tern_isa)isa);
            uint8_t *packed = tern_aligned_alloc(k->packed_size(c) + 64), *scratch = tern_aligned_alloc(k->scratch_size(c, cc.w) + 64);
            CHECK(k->pack(c, packed) == TERN_STATUS_OK, "%s: pack: %s", k->name, tern_last_error());
            memset(yk, 0xA5, sizeof(int32_t) * oh * ow * c->cout + 64);
            for (int oy = 0; oy < oh;) {   /* random row ranges */
                const int n = rnd_in(1, oh - oy);
                k->run(c, packed, cc.x, cc.h, cc.w, (uint8_t *)yk, oy, oy + n, scratch);
                oy += n;
            }
            CHECK(!memcmp(y, yk, sizeof(int32_t) * oh * ow * c->cout), "%s wide output differs: %s", k->name, cc.desc);
            CHECK(((uint8_t *)yk)[sizeof(int32_t) * oh * ow * c->cout] == 0xA5, "%s wrote past a wide output", k->name);
            fast++;
            free(packed);
            free(scratch);
        }
        int wide_seen = 0;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int o = 0; o < c->cout; o++) {
                    const int64_t a = direct_acc(&cc, cc.x, oy, ox, o);
                    const int want = direct_requant(a, c->mpos[o], c->mneg[o], c->shift[o], INT32_MIN, INT32_MAX);
                    const int32_t got = y[((size_t)oy * ow + ox) * c->cout + o];
                    CHECK(got == want, "wide %s: y=%d x=%d o=%d: ref %d, direct %d", cc.desc, oy, ox, o, got, want);
                    wide_seen |= got > 255 || got < -128;
                    outs++;
                }
        n_wide += wide_seen;
        free(y);
        free(yk);
        case_free(&cc);
    }
    fprintf(stderr, "  %d wide outputs agree; %d cases on fast kernels too; %d of 40 cases left the 8-bit range\n", outs, fast, n_wide);
    CHECK(n_wide >= 20, "the wide cases should mostly leave the 8-bit range");
}

/* ---- fast kernels vs reference ---- */

static int isa_available(enum tern_isa isa) { return tern_cpu_isa() >= isa; }

/* The avx512vnni kernels run here only if the CPU has AVX-512 VNNI, or if this binary was linked
 * with conv_avx512vnni.c built in its exact AVX2 emulation (-DTERN_VNNI_EMULATE, see that file):
 * `make test` builds and runs that as tests/test_conv_kernels_vnni_emu, which defines
 * tern_conv_vnni_emulated (weak here: absent in the normal build). */
extern const int tern_conv_vnni_emulated __attribute__((weak));
static int vnni_testable(void) {
    return isa_available(TERN_ISA_AVX512VNNI) || &tern_conv_vnni_emulated != NULL;
}
#define VNNI_SKIP "CPU has no AVX-512 VNNI: the avx512vnni kernels are not tested here"

/* Every wtype x every N x every channel count, other parameters random. */
static void sweep(enum tern_isa isa) {
    static const int chans[] = {1, 3, 5, 7, 16, 17, 33, 64};
    static const int ncl[] = {1, 2, 3, 4, 8, 16, 64, 0};
    static const int ks[] = {1, 3, 5, 7};
    static const int wts[] = {2, 4, 8};
    n_cases = n_fast = 0;
    int failed = 0;
    for (int wi = 0; wi < 3; wi++)
        for (int ni = 0; ni < 8; ni++)
            for (int ci = 0; ci < 8; ci++) {
                case_opts op = {0};
                op.wtype = wts[wi]; op.cluster = ncl[ni]; op.cin = chans[ci];
                op.cout = pick(chans, 8); op.groups = 1;
                op.kh = pick(ks, 4); op.kw = rnd(4) ? op.kh : pick(ks, 4);
                if (op.cin * op.cout * op.kh * op.kw > 64 * 64 * 9) op.kh = op.kw = 3;
                op.sh = rnd_in(1, 2); op.sw = rnd(4) ? op.sh : 3 - op.sh;
                op.dh = op.dw = rnd(6) == 0 ? 2 : 1;
                const int r = rnd(4);
                if (r == 0) { op.pt = op.pb = op.pl = op.pr = 0; }
                else if (r == 1) { op.pt = op.pb = op.kh / 2 * op.dh; op.pl = op.pr = op.kw / 2 * op.dw; }
                else { op.pt = rnd(op.kh); op.pb = rnd(op.kh); op.pl = rnd(op.kw); op.pr = rnd(op.kw); }
                op.in_signed = rnd(2); op.pad_nonzero = rnd(2); op.act = rnd(4);
                op.h = rnd_in(1, 11); op.w = rnd_in(1, 13);
                fix_hw(&op);
                op.batch = rnd_in(1, 3);
                conv_case cc;
                case_make(&cc, &op);
                failed += compare_case(&cc, isa) != 0;
                failed += compare_add_case(&cc, isa) != 0;
                case_free(&cc);
            }
    fprintf(stderr, "  %d cases, %d on a fast kernel, %d failed (each also with a fused add)\n", n_cases, n_fast, failed);
    fprintf(stderr, "  fused add: %zu outputs, %.1f%% at a clamp\n", n_add_out, 100.0 * n_add_clamped / (n_add_out ? n_add_out : 1));
    fprintf(stderr, "  %zu outputs: %.1f%% at qmin, %.1f%% at qmax, %.1f%% between\n", n_out,
            100.0 * n_at_min / n_out, 100.0 * n_at_max / n_out, 100.0 * n_between / n_out);
    CHECK(n_at_min > 0 && n_at_max > 0 && n_between > n_out / 4, "the sweep must hit both clamps and mostly not");
}

/* Structures the sweep reaches only by chance. */
static void structured(enum tern_isa isa) {
    n_cases = n_fast = 0;
    static const case_opts fixed[] = {
        /* cin cout g kh kw sh sw dh dw pt pl pb pr wtype N sgn padnz h w b ext act */
        {16, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 0, 0, 12, 12, 2, 0, 1},   /* ResNet block */
        {16, 32, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2, 4, 0, 0, 12, 12, 2, 0, 1},   /* stride 2 */
        {16, 32, 1, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 2, 4, 0, 0, 12, 12, 2, 0, 0},   /* 1x1 s2 shortcut */
        {64, 48, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 4, 0, 0, 7, 5, 2, 0, 1},     /* 1x1 flat path */
        {64, 48, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2, 0, 2, 8, 0, 0, 7, 5, 2, 0, 1},     /* 1x1, pad_b only */
        {33, 17, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 4, 1, 0, 5, 7, 2, 0, 2},     /* 1x1 signed odd */
        {3, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8, 0, 0, 1, 10, 10, 2, 0, 1},    /* first conv, mean pad */
        {3, 16, 1, 7, 7, 2, 2, 1, 1, 3, 3, 2, 2, 8, 0, 0, 1, 17, 15, 1, 0, 1},    /* 7x7/2 first conv */
        {16, 16, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 1, 1, 8, 8, 2, 0, 2},     /* groups */
        {18, 12, 3, 3, 3, 1, 2, 1, 1, 0, 2, 1, 0, 4, 3, 0, 1, 9, 9, 1, 0, 3},     /* groups, N=3 */
        {17, 17, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8, 1, 0, 1, 8, 9, 2, 0, 1},    /* depthwise */
        {32, 32, 32, 3, 3, 2, 2, 1, 1, 0, 1, 1, 0, 8, 1, 1, 1, 9, 9, 1, 0, 2},    /* depthwise s2 signed */
        {33, 33, 33, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 7, 9, 2, 0, 2},    /* depthwise ternary 5x5 (odd taps) */
        {20, 20, 20, 1, 1, 2, 1, 1, 1, 0, 1, 1, 0, 4, 1, 0, 1, 5, 6, 1, 0, 1},     /* depthwise 1x1, 4-bit */
        {48, 48, 48, 3, 3, 1, 2, 2, 1, 2, 1, 2, 0, 8, 1, 1, 0, 9, 10, 2, 0, 0},    /* depthwise dilated, signed */
        {16, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8, 1, 0, 1, 6, 6, 1, 0, 1},     /* depth multiplier 2 */
        {16, 16, 1, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 2, 4, 0, 1, 10, 11, 2, 0, 1},   /* dilation 2 */
        {7, 5, 1, 5, 3, 2, 1, 2, 1, 3, 0, 0, 2, 4, 2, 1, 1, 11, 8, 2, 0, 2},      /* everything odd */
        {64, 16, 1, 4, 4, 1, 1, 1, 1, 0, 0, 0, 0, 2, 64, 0, 0, 6, 6, 1, 1, 1},    /* 4 segments of 64 steps, all +1 x 255 */
        {64, 16, 1, 4, 4, 1, 1, 1, 1, 0, 0, 0, 0, 2, 64, 1, 0, 6, 6, 1, 2, 0},    /* same, -1 x -128 */
        {256, 16, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0, 0, 0, 3, 3, 1, 1, 1},    /* 64 steps exactly */
        {264, 16, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0, 0, 0, 3, 3, 1, 1, 1},    /* 66 steps: must split */
        {264, 16, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0, 1, 0, 3, 3, 1, 2, 0},    /* same, signed, -1 */
        {4, 16, 1, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 4, 4, 0, 0, 5, 5, 1, 1, 1},     /* 4-bit: 9 steps of +7 x 255 */
        {40, 16, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 4, 0, 0, 0, 3, 3, 1, 1, 1},    /* 4-bit: 10 steps: must split */
        {12, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 0, 1, 1, 5, 5, 1, 2, 0},    /* 4-bit -7 x -128, split */
        {64, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8, 0, 0, 0, 5, 5, 1, 1, 1},    /* 8-bit +127 x 255 */
        {5, 3, 1, 3, 3, 1, 1, 1, 1, 5, 5, 5, 5, 2, 2, 1, 1, 2, 2, 1, 0, 0},      /* pad bigger than input */
        /* the VNNI kernel's s16 segment bounds (vpdpwssd applies the scale) and its tile shapes */
        {128, 16, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0, 0, 0, 3, 5, 1, 1, 1},   /* ternary: 32 steps of +1 x 255 */
        {132, 16, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0, 1, 0, 3, 5, 1, 2, 0},   /* 33 steps: must split, signed -1 */
        {16, 16, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 4, 0, 0, 0, 3, 5, 1, 1, 1},    /* 4-bit: 4 steps of +7 x 255 */
        {20, 16, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 4, 0, 1, 0, 3, 5, 1, 2, 0},    /* 4-bit: 5 steps, must split */
        {24, 48, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 0, 1, 5, 9, 2, 0, 2},    /* 2 + 1 blocks, 45 pixels */
        {24, 80, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8, 0, 1, 0, 4, 6, 1, 0, 1},    /* 8-bit one cluster, 5 blocks */
        /* wide rows: the AVX2 kernels split the rows into several bands of copied rows */
        {64, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 0, 0, 9, 120, 1, 0, 1},   /* 2 output rows per band */
        {64, 32, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2, 4, 1, 1, 11, 150, 1, 0, 2},  /* stride 2, signed */
        {32, 16, 1, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0, 0, 0, 12, 250, 1, 0, 0},  /* unpadded: rows in place */
        {16, 24, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0, 0, 0, 9, 700, 1, 0, 1},   /* 1x1 in place */
        {32, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8, 0, 1, 1, 7, 200, 1, 0, 2},   /* 8-bit, widened rows */
        {64, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 4, 0, 1, 8, 130, 1, 0, 3},   /* 4-bit */
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        conv_case cc;
        case_make(&cc, &fixed[i]);
        failed += compare_case(&cc, isa) != 0;
        for (int r = 0; r < 3; r++) failed += compare_add_case(&cc, isa) != 0;
        case_free(&cc);
    }
    /* random depthwise convs (their own kernel) */
    for (int i = 0; i < 24; i++) {
        case_opts op = {0};
        op.cin = op.cout = op.groups = pick((const int[]){1, 3, 8, 15, 16, 17, 31, 33, 64}, 9);
        if (op.groups == 1) op.groups = op.cin = op.cout = 2;
        op.wtype = pick((const int[]){2, 4, 8}, 3); op.cluster = 1;
        op.kh = pick((const int[]){1, 3, 5, 7}, 4); op.kw = rnd(3) ? op.kh : pick((const int[]){1, 3, 5}, 3);
        op.sh = rnd_in(1, 2); op.sw = rnd_in(1, 2); op.dh = rnd_in(1, 2); op.dw = rnd_in(1, 2);
        op.pt = rnd(op.kh); op.pb = rnd(op.kh); op.pl = rnd(op.kw); op.pr = rnd(op.kw);
        op.in_signed = rnd(2); op.pad_nonzero = rnd(2); op.act = rnd(4);
        op.h = rnd_in(1, 10); op.w = rnd_in(1, 10); op.batch = rnd_in(1, 2);
        fix_hw(&op);
        conv_case cc;
        case_make(&cc, &op);
        failed += compare_case(&cc, isa) != 0;
        case_free(&cc);
    }
    /* every cluster size on the main layer shape */
    static const int ncl[] = {1, 2, 3, 4, 5, 6, 8, 12, 16, 32, 0};
    for (int w = 0; w < 3; w++)
        for (size_t i = 0; i < sizeof ncl / sizeof ncl[0]; i++) {
            case_opts op = {32, 24, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, (int[]){2, 4, 8}[w], ncl[i], (int)(i & 1), 1, 6, 7, 1, 0, 2};
            conv_case cc;
            case_make(&cc, &op);
            failed += compare_case(&cc, isa) != 0;
            case_free(&cc);
        }
    fprintf(stderr, "  %d cases, %d on a fast kernel, %d failed\n", n_cases, n_fast, failed);
}

/* Requantisation over its whole domain: zero codes make acc = bias, so any int32 accumulator,
 * multiplier (0 .. 2^31-1) and shift (0..31) can be driven through a kernel's epilogue. */
static void requant_domain(enum tern_isa isa) {
    static const int32_t accs[] = {0, 1, -1, 2, -2, 3, -3, INT32_MAX, INT32_MIN, INT32_MIN + 1, INT32_MAX - 1,
                                   1 << 30, -(1 << 30), (1 << 30) - 1, 12345678, -12345678};
    static const int32_t ms[] = {0, 1, 2, INT32_MAX, INT32_MAX - 1, 1 << 30, (1 << 30) + 1, 1 << 29, 3};
    int failed = 0;
    n_cases = n_fast = 0;
    for (int it = 0; it < 40; it++) {
        case_opts op = {1, 16 * rnd_in(1, 3) - rnd(9), 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
                        pick((const int[]){2, 4, 8}, 3), 1, rnd(2), 0, rnd_in(1, 4), rnd_in(1, 9), 1, 0, rnd(4)};
        conv_case cc;
        case_make(&cc, &op);
        memset(cc.w8, 0, (size_t)cc.c.cout);
        for (int o = 0; o < cc.c.cout; o++) {
            cc.bias[o] = rnd(3) ? accs[rnd(16)] : (int32_t)rnd64();
            cc.mpos[o] = rnd(3) ? ms[rnd(9)] : (int32_t)(rnd64() & 0x7FFFFFFF);
            cc.mneg[o] = rnd(3) ? ms[rnd(9)] : (int32_t)(rnd64() & 0x7FFFFFFF);
            cc.shift[o] = (int8_t)(it < 32 ? (it + o) % 32 : rnd(32));
        }
        if (rnd(2)) { cc.c.qmin = -128; cc.c.qmax = 127; } else { cc.c.qmin = rnd_in(0, 100); cc.c.qmax = rnd_in(cc.c.qmin, 255); }
        failed += compare_case(&cc, isa) != 0;
        case_free(&cc);
    }
    fprintf(stderr, "  %d cases, %d on a fast kernel, %d failed\n", n_cases, n_fast, failed);
}

static void test_requant_avx2(void) {
    if (!isa_available(TERN_ISA_AVX2)) SKIP("CPU has no AVX2+FMA");
    requant_domain(TERN_ISA_AVX2);
}
static void test_requant_avx512vnni(void) {
    if (!vnni_testable()) SKIP(VNNI_SKIP);
    requant_domain(TERN_ISA_AVX512VNNI);
}

static void test_sweep_avx2(void) {
    if (!isa_available(TERN_ISA_AVX2)) SKIP("CPU has no AVX2+FMA");
    sweep(TERN_ISA_AVX2);
}
static void test_structured_avx2(void) {
    if (!isa_available(TERN_ISA_AVX2)) SKIP("CPU has no AVX2+FMA");
    structured(TERN_ISA_AVX2);
}
static void test_sweep_avx512vnni(void) {
    if (!vnni_testable()) SKIP(VNNI_SKIP);
    sweep(TERN_ISA_AVX512VNNI);
}
static void test_structured_avx512vnni(void) {
    if (!vnni_testable()) SKIP(VNNI_SKIP);
    structured(TERN_ISA_AVX512VNNI);
}

/* At level ref the selector must give the reference. */
static void test_select_ref(void) {
    case_opts op = {16, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 0, 0, 4, 4, 1, 0, 1};
    conv_case cc;
    case_make(&cc, &op);
    CHECK(tern_conv_kernel_select(&cc.c, TERN_ISA_REF) == &tern_conv_ref, "ISA ref must select the reference");
    const tern_conv_kernel *k = tern_conv_kernel_select(&cc.c, tern_cpu_isa());
    fprintf(stderr, "  best kernel here for %s: %s\n", cc.desc, k->name);
    case_free(&cc);
}

int main(void) {
    const char *s = getenv("TERN_TEST_SEED");
    if (s && *s) rng_state ^= strtoull(s, NULL, 10) * 0x2545F4914F6CDD1Dull;
    fprintf(stderr, "cpu isa: %s%s\n", tern_isa_name(tern_cpu_isa()),
            &tern_conv_vnni_emulated != NULL ? "; the avx512vnni kernel is the AVX2 emulation" : "");
    RUN(test_ref_hand);
    RUN(test_ref_vs_direct);
    RUN(test_ref_wide);
    RUN(test_select_ref);
    RUN(test_requant_avx2);
    RUN(test_sweep_avx2);
    RUN(test_structured_avx2);
    RUN(test_sweep_avx512vnni);
    RUN(test_structured_avx512vnni);
    RUN(test_requant_avx512vnni);
    return check_summary();
}
