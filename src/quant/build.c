/* Building the integer model: quantize weights per policy and derive every integer parameter
 * (cluster scale mantissas, biases at the accumulator's scale, requantisation multipliers). */
#include "quant/internal.h"
#include <math.h>
#include <string.h>

/* r = m / 2^31 * 2^-shift with m in [2^30, 2^31) when possible. Returns 0 if r >= 1. */
static int to_mult(double r, int32_t *m, int8_t *shift) {
    if (!(r > 0)) { *m = 0; *shift = 0; return 1; }
    if (r >= 1.0) return 0;
    int e;
    double fr = frexp(r, &e); /* r = fr * 2^e, fr in [0.5, 1), e <= 0 */
    int s = -e;
    if (s > 31) { fr = ldexp(fr, 31 - s); s = 31; }
    double mm = nearbyint(ldexp(fr, 31));
    if (mm >= 2147483648.0) { mm /= 2; s--; }
    if (s < 0) return 0;
    *m = (int32_t)mm;
    *shift = (int8_t)s;
    return 1;
}

static enum tern_status build_conv(qctx *q, const low_layer *l, tern_qlayer *L, tern_qmodel *m) {
    const tern_node *n = l->node;
    const tern_qopts *o = q->o;
    const qt_info *xt = &q->qt[l->in[0]], *yt = &q->qt[l->out];
    tern_qconv *c = &L->conv;
    c->cin = xt->c;
    c->cout = yt->c;
    c->groups = 1;
    c->kh = c->kw = c->sh = c->sw = c->dh = c->dw = 1;
    if (n->op == TERN_OP_CONV) {
        c->groups = (int)n->a.group;
        c->kh = (int)n->a.kernel[0];
        c->kw = (int)n->a.kernel[1];
        c->sh = (int)n->a.strides[0];
        c->sw = (int)n->a.strides[1];
        c->dh = (int)n->a.dilations[0];
        c->dw = (int)n->a.dilations[1];
        c->pad_t = (int)n->a.pads[0];
        c->pad_l = (int)n->a.pads[1];
        c->pad_b = (int)n->a.pads[2];
        c->pad_r = (int)n->a.pads[3];
    } else { /* fully connected over the whole c x h x w input */
        c->kh = xt->h;
        c->kw = xt->w;
    }
    int cing = c->cin / c->groups, khw = c->kh * c->kw, K = cing * khw, cout = c->cout;
    tern_wpolicy pol = tern_q_layer_policy(q, l);
    int wtype = pol.wtype, N = pol.N, ncl = pol.ncl;
    c->wtype = wtype;
    c->cluster = N;
    float *w = NULL, *bias = NULL, *scales = NULL, *wq = NULL;
    int8_t *codes = NULL;
    int16_t *cs = NULL;
    int32_t *B = NULL, *mpos = NULL, *mneg = NULL;
    int8_t *shift = NULL;
    uint8_t *padv = NULL;
    enum tern_status st = tern_q_weights_of(q, l, &w, &bias);
    if (st) goto done;
    int fi = m->tensors[l->in[0]].exp; /* resolved exponents live in m (shared ones included) */
    if (l->in[0] == 0) { /* fold (p/255 - mean)/std into the first layer; pad with the mean pixel */
        padv = tern_malloc((size_t)c->cin);
        if (!padv) { st = TERN_STATUS_NOMEM; goto done; }
        for (int ci = 0; ci < c->cin; ci++) {
            double pv = nearbyint(255.0 * o->mean[ci % 3]);
            padv[ci] = (uint8_t)(pv < 0 ? 0 : pv > 255 ? 255 : pv);
        }
        tern_q_fold_input(o, w, bias, cout, c->groups, cing, khw);
    }
    codes = tern_malloc((size_t)cout * K);
    scales = tern_malloc(sizeof(float) * (size_t)cout * ncl);
    wq = tern_malloc(sizeof(float) * (size_t)cout * K);
    cs = tern_malloc(sizeof(int16_t) * (size_t)cout * ncl);
    B = tern_malloc(sizeof(int32_t) * (size_t)cout);
    mpos = tern_malloc(sizeof(int32_t) * (size_t)cout);
    mneg = tern_malloc(sizeof(int32_t) * (size_t)cout);
    shift = tern_malloc((size_t)cout);
    if (!codes || !scales || !wq || !cs || !B || !mpos || !mneg || !shift) { st = TERN_STATUS_NOMEM; goto done; }
    const opt_layer *ol = q->wl && l->widx >= 0 && q->wl[l->widx].codes ? &q->wl[l->widx] : NULL;
    if (ol) { /* optimize() already chose codes, scales and bias for this layer */
        memcpy(codes, ol->codes, (size_t)cout * K);
        memcpy(scales, ol->scales, sizeof(float) * (size_t)cout * ncl);
        memcpy(bias, ol->bias, sizeof(float) * (size_t)cout);
    } else {
        st = tern_wquant_tensor(w, cout, cing, khw, (enum tern_wtype)wtype, N, o->trule, n->name, codes, scales);
        if (st) goto done;
    }
    int64_t zeros = 0;
    for (int oc = 0; oc < cout; oc++)
        for (int k = 0; k < K; k++) {
            int g = wtype == TERN_WTYPE_INT8 ? 0 : (k / khw) / N;
            wq[(size_t)oc * K + k] = scales[(size_t)oc * ncl + g] * codes[(size_t)oc * K + k];
            zeros += codes[(size_t)oc * K + k] == 0;
        }
    L->sqnr_db = (float)tern_sqnr_db(w, wq, (size_t)cout * K);
    L->zero_frac = (float)((double)zeros / ((double)cout * K));
    int fo = yt->wide ? m->tensors[l->out].exp + 16 : m->tensors[l->out].exp; /* wide logits: as fine as requantisation allows */
    double xmax = xt->is_signed ? 128.0 : 255.0;
    const tern_node *act = l->act;
    double alpha = act && act->op == TERN_OP_LEAKYRELU ? act->a.alpha : 1.0;
    for (;;) { /* a wide output takes the finest exponent every channel can be requantised to */
        int ok = 1;
        for (int oc = 0; oc < cout && ok; oc++) {
            const float *s = scales + (size_t)oc * ncl;
            double smax = 0, load = 0;
            for (int g = 0; g < ncl; g++) smax = s[g] > smax ? s[g] : smax;
            for (int g = 0; g < ncl; g++) {
                int nz = 0, k0 = g * N * khw, k1 = (g + 1) * N * khw < K ? (g + 1) * N * khw : K;
                if (wtype == TERN_WTYPE_INT8) { k0 = 0; k1 = K; }
                for (int k = k0; k < k1; k++) nz += abs(codes[(size_t)oc * K + k]);
                load += smax > 0 ? nz * s[g] / smax : 0;
            }
            double cmax;
            if (wtype == TERN_WTYPE_INT8) cmax = 1;
            else {
                cmax = load > 0 ? floor(536870912.0 / (xmax * load)) : 32767;
                cmax = cmax > 32767 ? 32767 : cmax < 1 ? 1 : cmax;
            }
            double S = smax > 0 ? smax / cmax : 1.0 / 1024;
            double r = S * ldexp(1.0, fo - fi);
            for (int g = 0; g < ncl; g++) {
                double v = smax > 0 ? nearbyint(s[g] / S) : 0;
                cs[(size_t)oc * ncl + g] = (int16_t)(v > 32767 ? 32767 : v);
            }
            double bb = nearbyint(bias[oc] * ldexp(1.0, fi) / S);
            B[oc] = (int32_t)(bb > 536870912.0 ? 536870912.0 : bb < -536870912.0 ? -536870912.0 : bb);
            if (!to_mult(r, &mpos[oc], &shift[oc])) ok = 0;
            else mneg[oc] = act && act->op == TERN_OP_RELU ? 0 : act && act->op == TERN_OP_CLIP ? mpos[oc] : (int32_t)nearbyint(alpha * mpos[oc]);
        }
        if (ok) break;
        /* the output cannot be finer than the accumulator allows: take the finest that fits */
        if (--fo < -64) {
            st = tern_errorf(TERN_STATUS_NUMERIC, "layer '%s': no output exponent fits the weight scales", n->name);
            goto done;
        }
    }
    m->tensors[l->out].exp = fo;
    if (yt->wide) { c->qmin = INT32_MIN; c->qmax = INT32_MAX; c->out_wide = 1; }
    else if (!yt->is_signed) { c->qmin = 0; c->qmax = 255; }
    else { c->qmin = -128; c->qmax = 127; }
    if (act && act->op == TERN_OP_CLIP && !yt->wide) {
        double lo = nearbyint(act->a.clip_min * ldexp(1.0, fo)), hi = nearbyint(act->a.clip_max * ldexp(1.0, fo));
        if (lo > c->qmin) c->qmin = (int)lo;
        if (hi < c->qmax) c->qmax = (int)hi;
        if (c->qmin > c->qmax) c->qmin = c->qmax;
    }
    c->in_signed = xt->is_signed;
    c->w = codes;
    c->cscale = cs;
    c->bias = B;
    c->mpos = mpos;
    c->mneg = mneg;
    c->shift = shift;
    c->pad_value = padv;
    codes = NULL, cs = NULL, B = mpos = mneg = NULL, shift = NULL, padv = NULL;
    L->macs = (int64_t)cout * yt->h * yt->w * K;
done:
    free(w);
    free(bias);
    free(scales);
    free(wq);
    free(codes);
    free(cs);
    free(B);
    free(mpos);
    free(mneg);
    free(shift);
    free(padv);
    return st;
}

/* Multipliers for windows of 1..n taps (global pools: only n, stored at index 1). */
static enum tern_status pool_mults(tern_qlayer *L, int n, int global, int fi, int fo) {
    L->nmult = global ? 2 : n + 1;
    L->mult = tern_calloc((size_t)L->nmult, sizeof(int32_t));
    L->mshift = tern_calloc((size_t)L->nmult, 1);
    if (!L->mult || !L->mshift) return TERN_STATUS_NOMEM;
    for (int k = global ? n : 1; k <= n; k++)
        if (!to_mult(ldexp(1.0, fo - fi) / k, &L->mult[global ? 1 : k], &L->mshift[global ? 1 : k]))
            return tern_errorf(TERN_STATUS_NUMERIC, "layer '%s': pooling output exponent too fine", L->name);
    return TERN_STATUS_OK;
}

/* The function a LUT layer applies: the node's own (tern_unary_f32), or SiLU for a Mul that
 * lower.c matched as x * sigmoid(x). */
static double lut_f(const tern_node *n, double v) {
    if (n->op == TERN_OP_MUL) return v / (1.0 + exp(-v));
    return tern_unary_f32(n, (float)v);
}

/* Every input code's output code: y = clamp(round(f(code * 2^-fi) * 2^fo)). */
static enum tern_status build_lut(tern_qlayer *L, const tern_node *n, const tern_qtensor *tx, const tern_qtensor *ty) {
    if (!(L->lut = tern_malloc(256))) return TERN_STATUS_NOMEM;
    for (int b = 0; b < 256; b++) {
        int code = tx->is_signed ? (int)(int8_t)b : b;
        double y = nearbyint(lut_f(n, ldexp((double)code, -tx->exp)) * ldexp(1.0, ty->exp));
        y = y < L->qmin ? L->qmin : y > L->qmax ? L->qmax : y;
        L->lut[b] = (uint8_t)(int)y;
    }
    return TERN_STATUS_OK;
}

static int add_layer(tern_qmodel *m, int op, const char *name) {
    tern_qlayer *L = &m->layers[m->nlayers];
    memset(L, 0, sizeof *L);
    L->op = op;
    snprintf(L->name, sizeof L->name, "%s", name);
    return m->nlayers++;
}

static int add_tensor(tern_qmodel *m, const tern_qtensor *t) {
    m->tensors[m->ntensors] = *t;
    return m->ntensors++;
}

enum tern_status tern_q_build(qctx *q, tern_qmodel *m) {
    const tern_graph *g = q->g;
    int ncat = 0;
    for (int i = 0; i < q->nll; i++) ncat += q->ll[i].op == TERN_QOP_CONCAT ? q->ll[i].nin : 0;
    m->tensors = tern_calloc((size_t)(q->nqt + ncat), sizeof *m->tensors);
    m->layers = tern_calloc((size_t)(q->nll + ncat), sizeof *m->layers);
    if (!m->tensors || !m->layers) return TERN_STATUS_NOMEM;
    for (int t = 0; t < q->nqt; t++) {
        qt_info *qt = &q->qt[t];
        m->tensors[t] = (tern_qtensor){qt->c, qt->h, qt->w, qt->is_signed, t == 0 ? 0 : qt->exp, qt->wide};
    }
    m->ntensors = q->nqt;
    m->output = q->vmap[g->output];
    m->nclasses = m->tensors[m->output].c * m->tensors[m->output].h * m->tensors[m->output].w;
    for (int i = 0; i < q->nll; i++) {
        const low_layer *l = &q->ll[i];
        const tern_node *n = l->node;
        if (q->qt[l->out].same_as >= 0) m->tensors[l->out].exp = m->tensors[q->qt[l->out].same_as].exp;
        const tern_qtensor *tx = &m->tensors[l->in[0]], *ty = &m->tensors[l->out];
        int fi = tx->exp, fo = ty->exp;
        if (l->op == TERN_QOP_AVGPOOL || l->op == TERN_QOP_GLOBALAVGPOOL)
            m->tensors[l->out].exp = fo = tern_q_mean_exp(l->op, tx->h, tx->w, fi, fo, ty->wide);
        int li = add_layer(m, l->op, n->name);
        tern_qlayer *L = &m->layers[li];
        L->nin = l->nin;
        memcpy(L->in, l->in, sizeof L->in);
        L->out = l->out;
        L->qmin = ty->wide ? INT32_MIN : ty->is_signed ? -128 : 0;
        L->qmax = ty->wide ? INT32_MAX : ty->is_signed ? 127 : 255;
        enum tern_status st = TERN_STATUS_OK;
        switch (l->op) {
        case TERN_QOP_CONV:
            st = build_conv(q, l, L, m);
            break;
        case TERN_QOP_ADD: {
            int fb = m->tensors[l->in[1]].exp, F = fi > fb ? fi : fb;
            if (fo > F) F = fo;
            L->la = F - fi;
            L->lb = F - fb;
            L->rs = F - fo;
            if (L->la > 24 || L->lb > 24 || L->rs > 40) st = tern_errorf(TERN_STATUS_NUMERIC, "layer '%s': exponents too far apart", n->name);
            break;
        }
        case TERN_QOP_REQUANT:
            L->la = fo > fi ? fo - fi : 0;
            L->rs = fi > fo ? fi - fo : 0;
            if (l->act && l->act->op == TERN_OP_CLIP) {
                double lo = nearbyint(l->act->a.clip_min * ldexp(1.0, fo)), hi = nearbyint(l->act->a.clip_max * ldexp(1.0, fo));
                if (lo > L->qmin) L->qmin = (int)lo;
                if (hi < L->qmax) L->qmax = (int)hi;
            }
            break;
        case TERN_QOP_MAXPOOL: case TERN_QOP_AVGPOOL:
            L->kh = (int)n->a.kernel[0];
            L->kw = (int)n->a.kernel[1];
            L->sh = (int)n->a.strides[0];
            L->sw = (int)n->a.strides[1];
            if (!tern_q_pool_prepad(n)) { /* (else a PAD layer before this one did the padding) */
                L->pad_t = (int)n->a.pads[0];
                L->pad_l = (int)n->a.pads[1];
            }
            /* bottom/right pads are what the output size needs: ceil_mode's extra partial windows
             * become padding (padding never counts here), unused pads are dropped */
            L->pad_b = TERN_MAX(0, (ty->h - 1) * L->sh + L->kh - tx->h - L->pad_t);
            L->pad_r = TERN_MAX(0, (ty->w - 1) * L->sw + L->kw - tx->w - L->pad_l);
            if (l->op == TERN_QOP_AVGPOOL) st = pool_mults(L, L->kh * L->kw, 0, fi, fo);
            break;
        case TERN_QOP_GLOBALAVGPOOL:
            st = pool_mults(L, tx->h * tx->w, 1, fi, fo);
            break;
        case TERN_QOP_PAD: {
            if (n->op == TERN_OP_AVGPOOL) { /* see tern_q_pool_prepad() */
                L->pad_h0 = (int)n->a.pads[0]; L->pad_w0 = (int)n->a.pads[1];
                L->pad_h1 = (int)n->a.pads[2]; L->pad_w1 = (int)n->a.pads[3];
                snprintf(L->name, sizeof L->name, "%.56s.pad", n->name);
                break;
            }
            const int64_t *p = n->a.pad_list; /* [n c h w] begins then ends */
            L->pad_c0 = (int)p[1]; L->pad_h0 = (int)p[2]; L->pad_w0 = (int)p[3];
            L->pad_c1 = (int)p[5]; L->pad_h1 = (int)p[6]; L->pad_w1 = (int)p[7];
            break;
        }
        case TERN_QOP_LUT:
            st = build_lut(L, n, tx, ty);
            break;
        case TERN_QOP_CHANPERM: {   /* shuffle of G groups: output a*G + b is input b*(C/G) + a */
            const int G = (int)g->values[n->out[0]].dims[1], C = ty->c, per = C / G;
            if (!(L->perm = tern_malloc(sizeof(int32_t) * (size_t)C))) return TERN_STATUS_NOMEM;
            for (int a = 0; a < per; a++)
                for (int b = 0; b < G; b++) L->perm[a * G + b] = b * per + a;
            break;
        }
        case TERN_QOP_MUL: {
            int fb = m->tensors[l->in[1]].exp;
            L->la = fo > fi + fb ? fo - fi - fb : 0;
            L->rs = fi + fb > fo ? fi + fb - fo : 0;
            if (L->la > 31 || L->rs > 63) st = tern_errorf(TERN_STATUS_NUMERIC, "layer '%s': exponents too far apart", n->name);
            break;
        }
        case TERN_QOP_SLICE:
            L->start_c = (int)n->a.rs_start[1]; L->step_c = (int)n->a.rs_step[1];
            L->start_h = (int)n->a.rs_start[2]; L->step_h = (int)n->a.rs_step[2];
            L->start_w = (int)n->a.rs_start[3]; L->step_w = (int)n->a.rs_step[3];
            break;
        case TERN_QOP_CONCAT:
            for (int k = 0; k < l->nin; k++) {
                const tern_qtensor *tk = &m->tensors[l->in[k]];
                if (tk->exp == fo && tk->is_signed == ty->is_signed) continue;
                /* align this input first: a requant layer placed before the concat */
                tern_qtensor nt = *tk;
                nt.exp = fo;
                nt.is_signed = ty->is_signed;
                int t = add_tensor(m, &nt);
                tern_qlayer saved = *L;
                L->op = TERN_QOP_REQUANT;
                snprintf(L->name, sizeof L->name, "%.48s.align%d", n->name, k % 100);
                L->nin = 1;
                L->in[0] = saved.in[k];
                L->out = t;
                L->la = fo > tk->exp ? fo - tk->exp : 0;
                L->rs = tk->exp > fo ? tk->exp - fo : 0;
                li = add_layer(m, TERN_QOP_CONCAT, n->name);
                L = &m->layers[li];
                *L = saved;
                L->in[k] = t;
            }
            break;
        }
        if (st) return st;
    }
    return TERN_STATUS_OK;
}

