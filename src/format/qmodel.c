/* The quantized model's lifetime and its structural check. tern_qmodel_check() is the single
 * statement of what a well-formed model is: the .tern reader runs it on every file (before it
 * sizes the arrays, then with them) and the quantizer runs it before it saves. Every failure
 * names the model/file, the tensor or layer, and the offending values. */
#include "format/tern_format.h"
#include <stdarg.h>
#include <string.h>

void tern_qmodel_free(tern_qmodel *m) {
    if (!m) return;
    if (m->layers) {
        for (int i = 0; i < m->nlayers; i++) {
            tern_qlayer *L = &m->layers[i];
            free((void *)L->conv.w);
            free((void *)L->conv.cscale);
            free((void *)L->conv.bias);
            free((void *)L->conv.mpos);
            free((void *)L->conv.mneg);
            free((void *)L->conv.shift);
            free((void *)L->conv.pad_value);
            free(L->mult);
            free(L->mshift);
            free(L->lut);
            free(L->perm);
        }
    }
    free(m->layers);
    free(m->tensors);
    free(m);
}

static int in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

static const char *op_name(int op) {
    static const char *names[] = {"?", "CONV", "ADD", "MAXPOOL", "AVGPOOL", "GLOBALAVGPOOL",
                                  "PAD", "SLICE", "CONCAT", "REQUANT", "LUT", "MUL", "CHANPERM"};
    return op >= 1 && op <= TERN_QOP_LAST ? names[op] : "?";
}

/* The stored range of a tensor's elements. */
static void tensor_range(const tern_qtensor *t, int64_t *lo, int64_t *hi) {
    if (t->wide) { *lo = INT32_MIN; *hi = INT32_MAX; }
    else if (t->is_signed) { *lo = -128; *hi = 127; }
    else { *lo = 0; *hi = 255; }
}

/* Error helpers: every layer message starts "<what>: layer <i> '<name>' (<OP>): ". */
#define LFAIL(...) return layer_fail(what, li, L, __VA_ARGS__)
static enum tern_status layer_fail(const char *what, int li, const tern_qlayer *L, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum tern_status layer_fail(const char *what, int li, const tern_qlayer *L, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tern_errorf(TERN_STATUS_FORMAT, "%s: layer %d '%.*s' (%s): %s", what, li,
                       (int)strnlen(L->name, sizeof L->name), L->name, op_name(L->op), msg);
}

static enum tern_status check_clamp(const char *what, int li, const tern_qlayer *L, const char *which,
                                    int qmin, int qmax, const tern_qtensor *y, int yid) {
    int64_t lo, hi;
    tensor_range(y, &lo, &hi);
    if (!in_range(qmin, lo, hi) || !in_range(qmax, lo, hi) || qmin > qmax)
        LFAIL("%sclamp %d..%d is not an ordered range within %lld..%lld (output tensor %d is %s)", which,
              qmin, qmax, (long long)lo, (long long)hi, yid, y->wide ? "int32" : y->is_signed ? "int8" : "uint8");
    return TERN_STATUS_OK;
}

/* Pool window geometry (MAXPOOL/AVGPOOL): every window must hold at least one real pixel. */
static enum tern_status check_pool(const char *what, int li, const tern_qlayer *L,
                                   const tern_qtensor *x, const tern_qtensor *y) {
    if (!in_range(L->kh, 1, TERN_QLIM_WINDOW) || !in_range(L->kw, 1, TERN_QLIM_WINDOW))
        LFAIL("window %dx%d out of range 1..%d", L->kh, L->kw, TERN_QLIM_WINDOW);
    if (!in_range(L->sh, 1, TERN_QLIM_WINDOW) || !in_range(L->sw, 1, TERN_QLIM_WINDOW))
        LFAIL("stride %dx%d out of range 1..%d", L->sh, L->sw, TERN_QLIM_WINDOW);
    if (!in_range(L->pad_t, 0, L->kh - 1) || !in_range(L->pad_b, 0, L->kh - 1) ||
        !in_range(L->pad_l, 0, L->kw - 1) || !in_range(L->pad_r, 0, L->kw - 1))
        LFAIL("pads t%d l%d b%d r%d must be below the window %dx%d", L->pad_t, L->pad_l, L->pad_b,
              L->pad_r, L->kh, L->kw);
    int64_t eh = (int64_t)x->h + L->pad_t + L->pad_b - L->kh, ew = (int64_t)x->w + L->pad_l + L->pad_r - L->kw;
    if (eh < 0 || ew < 0)
        LFAIL("window %dx%d larger than the padded input %lldx%lld", L->kh, L->kw,
              (long long)(eh + L->kh), (long long)(ew + L->kw));
    int64_t oh = eh / L->sh + 1, ow = ew / L->sw + 1;
    if (oh != y->h || ow != y->w)
        LFAIL("output %dx%d but the window gives %lldx%lld", y->h, y->w, (long long)oh, (long long)ow);
    if (y->c != x->c) LFAIL("output has %d channels, input %d", y->c, x->c);
    return TERN_STATUS_OK;
}

static enum tern_status check_same_type(const char *what, int li, const tern_qlayer *L, int xid,
                                        const tern_qtensor *x, const tern_qtensor *y) {
    if (x->is_signed != y->is_signed || x->exp != y->exp)
        LFAIL("input tensor %d (%s, exp %d) and output (%s, exp %d) must share type and exponent", xid,
              x->is_signed ? "int8" : "uint8", x->exp, y->is_signed ? "int8" : "uint8", y->exp);
    return TERN_STATUS_OK;
}

static enum tern_status check_conv(const char *what, int li, const tern_qlayer *L, const tern_qtensor *x,
                                   const tern_qtensor *y, int arrays) {
    const tern_qconv *c = &L->conv;
    if (c->cin != x->c) LFAIL("conv cin %d but the input tensor has %d channels", c->cin, x->c);
    if (c->cout != y->c) LFAIL("conv cout %d but the output tensor has %d channels", c->cout, y->c);
    if (c->groups < 1 || c->cin % c->groups || c->cout % c->groups)
        LFAIL("groups %d does not divide cin %d and cout %d", c->groups, c->cin, c->cout);
    if (!in_range(c->kh, 1, TERN_QLIM_WINDOW) || !in_range(c->kw, 1, TERN_QLIM_WINDOW))
        LFAIL("kernel %dx%d out of range 1..%d", c->kh, c->kw, TERN_QLIM_WINDOW);
    if (!in_range(c->sh, 1, TERN_QLIM_WINDOW) || !in_range(c->sw, 1, TERN_QLIM_WINDOW))
        LFAIL("stride %dx%d out of range 1..%d", c->sh, c->sw, TERN_QLIM_WINDOW);
    if (!in_range(c->dh, 1, TERN_QLIM_WINDOW) || !in_range(c->dw, 1, TERN_QLIM_WINDOW))
        LFAIL("dilation %dx%d out of range 1..%d", c->dh, c->dw, TERN_QLIM_WINDOW);
    if (!in_range(c->pad_t, 0, TERN_QLIM_WINDOW) || !in_range(c->pad_l, 0, TERN_QLIM_WINDOW) ||
        !in_range(c->pad_b, 0, TERN_QLIM_WINDOW) || !in_range(c->pad_r, 0, TERN_QLIM_WINDOW))
        LFAIL("pads t%d l%d b%d r%d out of range 0..%d", c->pad_t, c->pad_l, c->pad_b, c->pad_r,
              TERN_QLIM_WINDOW);
    if (c->wtype != TERN_WTYPE_TERNARY && c->wtype != TERN_WTYPE_INT4 && c->wtype != TERN_WTYPE_INT8)
        LFAIL("unknown wtype %d (this reader knows 2, 4, 8)", c->wtype);
    const int cing = c->cin / c->groups;
    if (!in_range(c->cluster, 1, cing)) LFAIL("cluster %d out of range 1..%d", c->cluster, cing);
    if (c->wtype == TERN_WTYPE_INT8 && c->cluster != cing)
        LFAIL("8-bit weights need one cluster per output channel (cluster %d, cin/groups %d)", c->cluster, cing);
    if (!in_range(c->in_signed, 0, 1) || !in_range(c->out_wide, 0, 1))
        LFAIL("in_signed %d / out_wide %d must be 0 or 1", c->in_signed, c->out_wide);
    if (c->in_signed != x->is_signed)
        LFAIL("conv in_signed %d but the input tensor is %s", c->in_signed, x->is_signed ? "int8" : "uint8");
    if (c->out_wide != y->wide)
        LFAIL("conv out_wide %d but the output tensor is %s", c->out_wide, y->wide ? "wide" : "8-bit");
    /* the window must fit the padded input (tern_qconv_out_h would round a negative span up) */
    const int64_t spanh = (int64_t)c->dh * (c->kh - 1) + 1, spanw = (int64_t)c->dw * (c->kw - 1) + 1;
    if ((int64_t)x->h + c->pad_t + c->pad_b < spanh || (int64_t)x->w + c->pad_l + c->pad_r < spanw)
        LFAIL("dilated kernel %lldx%lld larger than the padded input %lldx%lld", (long long)spanh,
              (long long)spanw, (long long)x->h + c->pad_t + c->pad_b, (long long)x->w + c->pad_l + c->pad_r);
    const int oh = tern_qconv_out_h(c, x->h), ow = tern_qconv_out_w(c, x->w);
    if (oh != y->h || ow != y->w)
        LFAIL("output tensor is %dx%d but the conv geometry gives %dx%d", y->h, y->w, oh, ow);
    const int64_t nw = (int64_t)c->cout * cing * c->kh * c->kw;
    if (nw > TERN_QLIM_WEIGHTS) LFAIL("%lld weights, more than the limit %d", (long long)nw, TERN_QLIM_WEIGHTS);
    if (!c->out_wide) {
        enum tern_status st = check_clamp(what, li, L, "conv ", c->qmin, c->qmax, y, L->out);
        if (st) return st;
    }
    if (!arrays) return TERN_STATUS_OK;

    if (!c->w || !c->cscale || !c->bias || !c->mpos || !c->mneg || !c->shift)
        LFAIL("missing weight or requantisation arrays");
    const int lim = c->wtype == TERN_WTYPE_TERNARY ? 1 : c->wtype == TERN_WTYPE_INT4 ? 7 : 127;
    for (int64_t i = 0; i < nw; i++)
        if (!in_range(c->w[i], -lim, lim))
            LFAIL("weight code %d at index %lld out of range -%d..%d for wtype %d", c->w[i], (long long)i,
                  lim, lim, c->wtype);
    const int64_t ns = (int64_t)c->cout * tern_qconv_nclusters(c);
    for (int64_t i = 0; i < ns; i++)
        if (c->cscale[i] < 0)
            LFAIL("cluster scale %d at index %lld out of range 0..32767", c->cscale[i], (long long)i);
    for (int o = 0; o < c->cout; o++) {
        if (c->mpos[o] < 0 || c->mneg[o] < 0)
            LFAIL("channel %d: multipliers %d / %d must be >= 0", o, c->mpos[o], c->mneg[o]);
        if (!in_range(c->shift[o], 0, 31)) LFAIL("channel %d: shift %d out of range 0..31", o, c->shift[o]);
    }
    return TERN_STATUS_OK;
}

static enum tern_status check_layer(const tern_qmodel *m, const char *what, int li, uint8_t *produced,
                                    int arrays) {
    const tern_qlayer *L = &m->layers[li];
    enum tern_status st;
    if (!memchr(L->name, 0, sizeof L->name)) LFAIL("name is not NUL-terminated within %zu bytes", sizeof L->name);
    if (!in_range(L->op, TERN_QOP_CONV, TERN_QOP_LAST))
        LFAIL("unknown op %d (this reader knows 1..%d; file from a newer tern?)", L->op, TERN_QOP_LAST);
    const int op = L->op;
    const int nin_min = op == TERN_QOP_ADD || op == TERN_QOP_MUL ? 2 : 1;
    const int nin_max = op == TERN_QOP_ADD || op == TERN_QOP_MUL ? 2 : op == TERN_QOP_CONCAT ? TERN_MAX_QIN : 1;
    if (!in_range(L->nin, nin_min, nin_max))
        LFAIL("%d inputs, this op takes %d..%d", L->nin, nin_min, nin_max);
    for (int k = 0; k < L->nin; k++) {
        const int t = L->in[k];
        if (!in_range(t, 0, m->ntensors - 1))
            LFAIL("input %d is tensor %d, out of range 0..%d", k, t, m->ntensors - 1);
        if (!produced[t]) LFAIL("input %d is tensor %d, which no earlier layer produces", k, t);
        if (m->tensors[t].wide) LFAIL("input %d is tensor %d, a wide (int32 logits) tensor", k, t);
    }
    if (!in_range(L->out, 1, m->ntensors - 1))
        LFAIL("output is tensor %d, out of range 1..%d", L->out, m->ntensors - 1);
    if (produced[L->out]) LFAIL("output tensor %d is already produced by an earlier layer", L->out);
    produced[L->out] = 1;

    const tern_qtensor *x = &m->tensors[L->in[0]], *y = &m->tensors[L->out];
    const int xid = L->in[0];
    const int pool = op == TERN_QOP_AVGPOOL || op == TERN_QOP_GLOBALAVGPOOL;
    if (!pool && L->nmult != 0) LFAIL("nmult %d but only average pools have multipliers", L->nmult);

    switch (op) {
    case TERN_QOP_CONV:
        if ((st = check_conv(what, li, L, x, y, arrays))) return st;
        break;
    case TERN_QOP_ADD: {
        const tern_qtensor *b = &m->tensors[L->in[1]];
        if (x->c != y->c || x->h != y->h || x->w != y->w || b->c != y->c || b->h != y->h || b->w != y->w)
            LFAIL("shapes %dx%dx%d + %dx%dx%d -> %dx%dx%d differ (CxHxW)", x->c, x->h, x->w, b->c, b->h, b->w,
                  y->c, y->h, y->w);
        /* the engine shifts in int64: la/lb up to 31 on 8-bit values, any rounding shift up to 63 */
        if (!in_range(L->la, 0, 31) || !in_range(L->lb, 0, 31) || !in_range(L->rs, 0, 63))
            LFAIL("shifts la %d lb %d rs %d out of range (la, lb 0..31, rs 0..63)", L->la, L->lb, L->rs);
        if (x->exp + L->la != b->exp + L->lb || x->exp + L->la - L->rs != y->exp)
            LFAIL("exponents do not line up: %d+la %d vs %d+lb %d, minus rs %d should give the output's %d",
                  x->exp, L->la, b->exp, L->lb, L->rs, y->exp);
        break;
    }
    case TERN_QOP_MAXPOOL:
        if ((st = check_pool(what, li, L, x, y))) return st;
        if ((st = check_same_type(what, li, L, xid, x, y))) return st;
        break;
    case TERN_QOP_AVGPOOL:
    case TERN_QOP_GLOBALAVGPOOL:
        if (op == TERN_QOP_AVGPOOL) {
            if ((st = check_pool(what, li, L, x, y))) return st;
            if (L->nmult != L->kh * L->kw + 1)
                LFAIL("nmult %d, expected kh*kw+1 = %d", L->nmult, L->kh * L->kw + 1);
        } else {
            if (y->c != x->c || y->h != 1 || y->w != 1)
                LFAIL("output %dx%dx%d, expected %dx1x1", y->c, y->h, y->w, x->c);
            if ((int64_t)x->h * x->w > TERN_QLIM_GAP)
                LFAIL("input %dx%d has more than %d pixels to sum", x->h, x->w, TERN_QLIM_GAP);
            if (L->nmult != 2) LFAIL("nmult %d, expected 2 (index 1 holds the only multiplier)", L->nmult);
        }
        if (!arrays) break;
        if (!L->mult || !L->mshift) LFAIL("missing multiplier arrays");
        for (int k = 0; k < L->nmult; k++)
            if (L->mult[k] < 0 || !in_range(L->mshift[k], 0, 31))
                LFAIL("multiplier %d: %d >> %d out of range (mult >= 0, shift 0..31)", k, L->mult[k], L->mshift[k]);
        break;
    case TERN_QOP_PAD:
        if (!in_range(L->pad_c0, 0, TERN_QLIM_DIM) || !in_range(L->pad_c1, 0, TERN_QLIM_DIM) ||
            !in_range(L->pad_h0, 0, TERN_QLIM_DIM) || !in_range(L->pad_h1, 0, TERN_QLIM_DIM) ||
            !in_range(L->pad_w0, 0, TERN_QLIM_DIM) || !in_range(L->pad_w1, 0, TERN_QLIM_DIM))
            LFAIL("pads c %d,%d h %d,%d w %d,%d out of range 0..%d", L->pad_c0, L->pad_c1, L->pad_h0, L->pad_h1,
                  L->pad_w0, L->pad_w1, TERN_QLIM_DIM);
        if ((int64_t)x->c + L->pad_c0 + L->pad_c1 != y->c || (int64_t)x->h + L->pad_h0 + L->pad_h1 != y->h ||
            (int64_t)x->w + L->pad_w0 + L->pad_w1 != y->w)
            LFAIL("input %dx%dx%d padded by c %d,%d h %d,%d w %d,%d is not the output %dx%dx%d", x->c, x->h,
                  x->w, L->pad_c0, L->pad_c1, L->pad_h0, L->pad_h1, L->pad_w0, L->pad_w1, y->c, y->h, y->w);
        if ((st = check_same_type(what, li, L, xid, x, y))) return st;
        break;
    case TERN_QOP_SLICE: {
        const int start[3] = {L->start_c, L->start_h, L->start_w}, step[3] = {L->step_c, L->step_h, L->step_w};
        const int xd[3] = {x->c, x->h, x->w}, yd[3] = {y->c, y->h, y->w};
        static const char dn[3] = {'c', 'h', 'w'};
        for (int d = 0; d < 3; d++) {
            if (!in_range(start[d], 0, TERN_QLIM_DIM) || !in_range(step[d], 1, TERN_QLIM_DIM))
                LFAIL("%c: start %d / step %d out of range (0.., 1..)", dn[d], start[d], step[d]);
            if (start[d] + (int64_t)(yd[d] - 1) * step[d] >= xd[d])
                LFAIL("%c: %d elements from %d step %d run past the input's %d", dn[d], yd[d], start[d], step[d], xd[d]);
        }
        if ((st = check_same_type(what, li, L, xid, x, y))) return st;
        break;
    }
    case TERN_QOP_CONCAT: {
        int64_t c = 0;
        for (int k = 0; k < L->nin; k++) {
            const tern_qtensor *t = &m->tensors[L->in[k]];
            if (t->h != y->h || t->w != y->w)
                LFAIL("input %d is %dx%d, output %dx%d", k, t->h, t->w, y->h, y->w);
            if ((st = check_same_type(what, li, L, L->in[k], t, y))) return st;
            c += t->c;
        }
        if (c != y->c) LFAIL("inputs have %lld channels in all, output %d", (long long)c, y->c);
        break;
    }
    case TERN_QOP_LUT:
        if (y->wide) LFAIL("output tensor %d is wide: a lookup table gives bytes", L->out);
        if (x->c != y->c || x->h != y->h || x->w != y->w)
            LFAIL("shape %dx%dx%d -> %dx%dx%d changes", x->c, x->h, x->w, y->c, y->h, y->w);
        if (arrays && !L->lut) LFAIL("missing lookup table");
        break;
    case TERN_QOP_CHANPERM:
        if (y->wide) LFAIL("output tensor %d is wide: a permutation moves bytes", L->out);
        if (x->c != y->c || x->h != y->h || x->w != y->w)
            LFAIL("shape %dx%dx%d -> %dx%dx%d changes", x->c, x->h, x->w, y->c, y->h, y->w);
        if ((st = check_same_type(what, li, L, xid, x, y))) return st;
        if (!arrays) break;
        if (!L->perm) LFAIL("missing permutation");
        for (int j = 0; j < y->c; j++)
            if (!in_range(L->perm[j], 0, x->c - 1)) LFAIL("perm[%d] = %d out of range 0..%d", j, L->perm[j], x->c - 1);
        break;
    case TERN_QOP_MUL: {
        const tern_qtensor *b = &m->tensors[L->in[1]];
        if (y->wide) LFAIL("output tensor %d is wide: the product is stored as bytes", L->out);
        if (x->c != y->c || x->h != y->h || x->w != y->w || b->c != y->c ||
            !((b->h == y->h && b->w == y->w) || (b->h == 1 && b->w == 1)))
            LFAIL("shapes %dx%dx%d * %dx%dx%d -> %dx%dx%d: b must have a's shape or be %dx1x1 (CxHxW)", x->c, x->h,
                  x->w, b->c, b->h, b->w, y->c, y->h, y->w, y->c);
        if (!in_range(L->la, 0, 31) || !in_range(L->rs, 0, 63))
            LFAIL("shifts la %d rs %d out of range (la 0..31, rs 0..63)", L->la, L->rs);
        if (x->exp + b->exp + L->la - L->rs != y->exp)
            LFAIL("exponents do not line up: %d + %d + la %d - rs %d should give the output's %d", x->exp, b->exp,
                  L->la, L->rs, y->exp);
        break;
    }
    case TERN_QOP_REQUANT:
        if (x->c != y->c || x->h != y->h || x->w != y->w)
            LFAIL("shape %dx%dx%d -> %dx%dx%d changes", x->c, x->h, x->w, y->c, y->h, y->w);
        if (!in_range(L->la, 0, 31) || !in_range(L->rs, 0, 63))
            LFAIL("shifts la %d rs %d out of range (la 0..31, rs 0..63)", L->la, L->rs);
        if (x->exp + L->la - L->rs != y->exp)
            LFAIL("input exp %d shifted left by %d and right by %d is not the output exp %d", x->exp, L->la, L->rs,
                  y->exp);
        break;
    }
    /* last, so a type mismatch above is reported as such rather than as a bad clamp */
    return check_clamp(what, li, L, "", L->qmin, L->qmax, y, L->out);
}

enum tern_status tern_qmodel_check(const tern_qmodel *m, const char *what, int arrays) {
    if (!what) what = "model";
    if (!m) return tern_errorf(TERN_STATUS_INVALID_ARG, "%s: no model", what);
    if (!in_range(m->ntensors, 2, TERN_QLIM_TENSORS) || !m->tensors)
        return tern_errorf(TERN_STATUS_FORMAT, "%s: %d tensors, out of range 2..%d", what, m->ntensors, TERN_QLIM_TENSORS);
    if (!in_range(m->nlayers, 1, TERN_QLIM_LAYERS) || !m->layers)
        return tern_errorf(TERN_STATUS_FORMAT, "%s: %d layers, out of range 1..%d", what, m->nlayers, TERN_QLIM_LAYERS);
    if (!in_range(m->in_c, 1, TERN_QLIM_DIM) || !in_range(m->in_h, 1, TERN_QLIM_DIM) ||
        !in_range(m->in_w, 1, TERN_QLIM_DIM))
        return tern_errorf(TERN_STATUS_FORMAT, "%s: input %dx%dx%d (CxHxW) out of range 1..%d", what, m->in_c,
                           m->in_h, m->in_w, TERN_QLIM_DIM);
    if (!in_range(m->bgr, 0, 1) || !in_range(m->resize_short, 0, TERN_QLIM_DIM) || !in_range(m->crop, 0, TERN_QLIM_DIM))
        return tern_errorf(TERN_STATUS_FORMAT, "%s: preprocessing bgr %d resize_short %d crop %d out of range",
                           what, m->bgr, m->resize_short, m->crop);
    if (!memchr(m->source, 0, sizeof m->source))
        return tern_errorf(TERN_STATUS_FORMAT, "%s: source name is not NUL-terminated", what);
    if (!in_range(m->output, 1, m->ntensors - 1))
        return tern_errorf(TERN_STATUS_FORMAT, "%s: output tensor %d out of range 1..%d", what, m->output,
                           m->ntensors - 1);
    for (int i = 0; i < m->ntensors; i++) {
        const tern_qtensor *t = &m->tensors[i];
        if (!in_range(t->c, 1, TERN_QLIM_DIM) || !in_range(t->h, 1, TERN_QLIM_DIM) || !in_range(t->w, 1, TERN_QLIM_DIM))
            return tern_errorf(TERN_STATUS_FORMAT, "%s: tensor %d: shape %dx%dx%d (CxHxW) out of range 1..%d",
                               what, i, t->c, t->h, t->w, TERN_QLIM_DIM);
        if ((int64_t)t->c * t->h * t->w > TERN_QLIM_ELEMS)
            return tern_errorf(TERN_STATUS_FORMAT, "%s: tensor %d: %dx%dx%d has more than %d elements", what, i,
                               t->c, t->h, t->w, TERN_QLIM_ELEMS);
        if (!in_range(t->is_signed, 0, 1) || !in_range(t->wide, 0, 1))
            return tern_errorf(TERN_STATUS_FORMAT, "%s: tensor %d: is_signed %d / wide %d must be 0 or 1", what,
                               i, t->is_signed, t->wide);
        if (!in_range(t->exp, -TERN_QLIM_EXP, TERN_QLIM_EXP))
            return tern_errorf(TERN_STATUS_FORMAT, "%s: tensor %d: exponent %d out of range -%d..%d", what, i,
                               t->exp, TERN_QLIM_EXP, TERN_QLIM_EXP);
        if (t->wide && i != m->output)
            return tern_errorf(TERN_STATUS_FORMAT, "%s: tensor %d is wide (int32) but only the output %d may be",
                               what, i, m->output);
    }
    const tern_qtensor *t0 = &m->tensors[0];
    if (t0->c != m->in_c || t0->h != m->in_h || t0->w != m->in_w || t0->is_signed || t0->exp != 0)
        return tern_errorf(TERN_STATUS_FORMAT,
                           "%s: tensor 0 (%dx%dx%d %s exp %d) is not the input %dx%dx%d uint8 exp 0", what, t0->c,
                           t0->h, t0->w, t0->is_signed ? "int8" : "uint8", t0->exp, m->in_c, m->in_h, m->in_w);
    const tern_qtensor *to = &m->tensors[m->output];
    if (m->nclasses < 1 || (int64_t)to->c * to->h * to->w != m->nclasses)
        return tern_errorf(TERN_STATUS_FORMAT, "%s: nclasses %d but the output tensor %d is %dx%dx%d", what,
                           m->nclasses, m->output, to->c, to->h, to->w);

    uint8_t *produced = tern_calloc((size_t)m->ntensors, 1);
    if (!produced) return TERN_STATUS_NOMEM;
    produced[0] = 1;
    enum tern_status st = TERN_STATUS_OK;
    for (int i = 0; i < m->nlayers && !st; i++) st = check_layer(m, what, i, produced, arrays);
    if (!st && !produced[m->output])
        st = tern_errorf(TERN_STATUS_FORMAT, "%s: no layer produces the output tensor %d", what, m->output);
    free(produced);
    return st;
}

enum tern_status tern_qmodel_validate(const tern_qmodel *m, const char *what) {
    return tern_qmodel_check(m, what, 1);
}
