/* The op table: per op, shape inference, constant folding and the FP32 kernel.
 * Shapes are inferred at batch 1 (dims[0] of activations). Folding evaluates nodes whose inputs
 * are all constants (the shape subgraphs torch exports), so the executors never see them. */
#include "graph/graph.h"
#include "graph/fp32.h"
#include <math.h>
#include <string.h>

#define V(id) (&g->values[(id)])
#define FAIL(...) tern_errorf(TERN_STATUS_SHAPE, __VA_ARGS__)

/* float -> int64 saturating (out-of-range conversion is UB in C); NaN -> 0 */
static int64_t f2i(double f) {
    return f != f ? 0 : f >= 0x1p62 ? INT64_C(1) << 62 : f <= -0x1p62 ? -(INT64_C(1) << 62) : (int64_t)f;
}

static int is_const(const tern_graph *g, int id) { return id >= 0 && g->values[id].data != NULL; }

/* Read a constant 1-D (or scalar) integer list; returns count, or -1 if not constant. */
static int read_ints(const tern_graph *g, int id, int64_t *out, int max) {
    if (!is_const(g, id)) return -1;
    const tern_value *v = &g->values[id];
    int64_t n = tern_value_numel(v);
    if (n > max) return -1;
    for (int64_t i = 0; i < n; i++) {
        if (v->dtype == TERN_DTYPE_I64) { out[i] = ((int64_t *)v->data)[i]; continue; }
        out[i] = f2i(((float *)v->data)[i]);
    }
    return (int)n;
}

static enum tern_status set_shape(tern_graph *g, int id, int ndim, const int64_t *dims, int dtype) {
    tern_value *v = V(id);
    if (ndim < 0 || ndim > TERN_MAX_DIMS) return FAIL("%s: rank %d not supported", v->name, ndim);
    int64_t total = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0) return FAIL("%s: negative dimension %lld", v->name, (long long)dims[i]);
        if (dims[i] > TERN_MAX_NUMEL || (total *= dims[i]) > TERN_MAX_NUMEL) /* both factors <= 2^30 */
            return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: more than %lld elements (TERN_MAX_NUMEL)", v->name, (long long)TERN_MAX_NUMEL);
    }
    v->ndim = ndim;
    memcpy(v->dims, dims, sizeof(int64_t) * (size_t)ndim);
    v->dtype = dtype;
    v->shape_known = 1;
    return TERN_STATUS_OK;
}

/* The data of a folded node's output. A fold may make at most TERN_MAX_FOLD_NUMEL elements, or
 * as many as its largest input has: so a few bytes of ConstantOfShape, Range or broadcasting
 * cannot ask for gigabytes (and the time to fill them), while folding real weights still works. */
static enum tern_status alloc_data(tern_graph *g, const tern_node *n) {
    tern_value *v = V(n->out[0]);
    int64_t cnt = tern_value_numel(v), lim = TERN_MAX_FOLD_NUMEL;
    for (int i = 0; i < n->nin; i++)
        if (n->in[i] >= 0 && tern_value_numel(V(n->in[i])) > lim) lim = tern_value_numel(V(n->in[i]));
    if (cnt > lim)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s %s: a constant of %lld elements is more than folding makes (TERN_MAX_FOLD_NUMEL %lld, or its largest input)",
                           tern_ops[n->op].name, n->name, (long long)cnt, (long long)TERN_MAX_FOLD_NUMEL);
    v->data = tern_calloc((size_t)(cnt ? cnt : 1), (size_t)tern_dtype_size(v->dtype));
    return v->data ? TERN_STATUS_OK : TERN_STATUS_NOMEM;
}

static enum tern_status same_shape(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    return set_shape(g, n->out[0], x->ndim, x->dims, x->dtype);
}

/* Resolve auto_pad into explicit pads once the input size is known. */
static void resolve_auto_pad(tern_attrs *a, int64_t h, int64_t w) {
    if (a->auto_pad == 0) return;
    int64_t in[2] = {h, w};
    for (int i = 0; i < 2; i++) {
        if (a->auto_pad == 1) {
            a->pads[i] = a->pads[i + 2] = 0;
            continue;
        }
        int64_t out = (in[i] + a->strides[i] - 1) / a->strides[i];
        int64_t need = (out - 1) * a->strides[i] + (a->kernel[i] - 1) * a->dilations[i] + 1 - in[i];
        if (need < 0) need = 0;
        int64_t small = need / 2, big = need - small;
        a->pads[i] = a->auto_pad == 2 ? small : big;
        a->pads[i + 2] = a->auto_pad == 2 ? big : small;
    }
    a->auto_pad = 0;
}

static int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t p1, int ceil_mode) {
    int64_t span = in + p0 + p1 - d * (k - 1) - 1;
    if (span < 0) return 0;
    int64_t o = ceil_mode ? (span + s - 1) / s + 1 : span / s + 1;
    /* ONNX/PyTorch: the last window must start inside the input or left padding */
    if (ceil_mode && (o - 1) * s >= in + p0) o--;
    return o;
}

/* Bound a node's MACs (after its output shape is set), so that reports and sums cannot overflow. */
static enum tern_status check_macs(tern_graph *g, tern_node *n) {
    int64_t per = tern_value_numel_per_image(V(n->out[0])), k = 1, m;
    const tern_value *w = V(n->in[1]);
    if (n->op == TERN_OP_CONV) k = w->dims[1] * w->dims[2] * w->dims[3]; /* <= TERN_MAX_NUMEL */
    else k = w->dims[0];
    if (tern_mul_ovf(per, k, &m) || m > TERN_MAX_MACS)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s %s: more than %lld multiply-accumulates per image (TERN_MAX_MACS)",
                           tern_ops[n->op].name, n->name, (long long)TERN_MAX_MACS);
    return TERN_STATUS_OK;
}

static enum tern_status infer_conv(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]), *w = V(n->in[1]);
    if (x->ndim != 4) return FAIL("Conv %s: input %s has rank %d, only 2-D convolutions (rank 4) are supported", n->name, x->name, x->ndim);
    if (w->ndim != 4 || !w->data) return FAIL("Conv %s: weight %s must be a constant of rank 4", n->name, w->name);
    tern_attrs *a = &n->a;
    if (a->group < 1 || x->dims[1] % a->group || w->dims[0] % a->group || w->dims[1] * a->group != x->dims[1])
        return FAIL("Conv %s: input channels %lld, weight %lldx%lld and group %lld do not fit", n->name,
                    (long long)x->dims[1], (long long)w->dims[0], (long long)w->dims[1], (long long)a->group);
    if (a->kernel[0] == 0) { a->kernel[0] = w->dims[2]; a->kernel[1] = w->dims[3]; }
    if (a->kernel[0] != w->dims[2] || a->kernel[1] != w->dims[3])
        return FAIL("Conv %s: kernel_shape does not match the weight", n->name);
    if (n->in[2] >= 0 && (tern_value_numel(V(n->in[2])) != w->dims[0] || !is_const(g, n->in[2])))
        return FAIL("Conv %s: bias must be a constant of %lld values", n->name, (long long)w->dims[0]);
    resolve_auto_pad(a, x->dims[2], x->dims[3]);
    int64_t d[4] = {x->dims[0], w->dims[0],
                    window_out(x->dims[2], a->kernel[0], a->strides[0], a->dilations[0], a->pads[0], a->pads[2], 0),
                    window_out(x->dims[3], a->kernel[1], a->strides[1], a->dilations[1], a->pads[1], a->pads[3], 0)};
    if (d[2] <= 0 || d[3] <= 0) return FAIL("Conv %s: output would be empty", n->name);
    enum tern_status st = set_shape(g, n->out[0], 4, d, TERN_DTYPE_F32);
    return st ? st : check_macs(g, n);
}

static enum tern_status infer_pool(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    if (x->ndim != 4) return FAIL("%s %s: input rank %d, only 2-D pooling is supported", tern_ops[n->op].name, n->name, x->ndim);
    tern_attrs *a = &n->a;
    if (n->op == TERN_OP_GLOBALAVGPOOL) {
        int64_t d[4] = {x->dims[0], x->dims[1], 1, 1};
        return set_shape(g, n->out[0], 4, d, TERN_DTYPE_F32);
    }
    if (a->kernel[0] <= 0 || a->kernel[1] <= 0) return FAIL("%s %s: kernel_shape missing", tern_ops[n->op].name, n->name);
    resolve_auto_pad(a, x->dims[2], x->dims[3]);
    int64_t d[4] = {x->dims[0], x->dims[1],
                    window_out(x->dims[2], a->kernel[0], a->strides[0], a->dilations[0], a->pads[0], a->pads[2], a->ceil_mode),
                    window_out(x->dims[3], a->kernel[1], a->strides[1], a->dilations[1], a->pads[1], a->pads[3], a->ceil_mode)};
    if (d[2] <= 0 || d[3] <= 0) return FAIL("%s %s: output would be empty", tern_ops[n->op].name, n->name);
    return set_shape(g, n->out[0], 4, d, TERN_DTYPE_F32);
}

static enum tern_status infer_gemm(tern_graph *g, tern_node *n) {
    tern_value *A = V(n->in[0]), *B = V(n->in[1]);
    if (A->ndim != 2 || B->ndim != 2) return FAIL("Gemm %s: inputs must be 2-D (got rank %d and %d)", n->name, A->ndim, B->ndim);
    if (!B->data) return FAIL("Gemm %s: B must be a constant (weights)", n->name);
    int64_t M = n->a.trans_a ? A->dims[1] : A->dims[0], K = n->a.trans_a ? A->dims[0] : A->dims[1];
    int64_t KB = n->a.trans_b ? B->dims[1] : B->dims[0], N = n->a.trans_b ? B->dims[0] : B->dims[1];
    if (K != KB) return FAIL("Gemm %s: inner dimensions %lld and %lld differ", n->name, (long long)K, (long long)KB);
    if (n->a.trans_a) return tern_errorf(TERN_STATUS_UNSUPPORTED, "Gemm %s: transA=1 on activations is not supported", n->name);
    if (n->in[2] >= 0) {
        tern_value *C = V(n->in[2]);
        int64_t cn = tern_value_numel(C);
        if (!C->data || (cn != N && cn != 1)) return FAIL("Gemm %s: C must be a constant of %lld (or 1) values", n->name, (long long)N);
    }
    int64_t d[2] = {M, N};
    enum tern_status st = set_shape(g, n->out[0], 2, d, TERN_DTYPE_F32);
    if (st) return st;
    int64_t m;
    if (tern_mul_ovf(tern_value_numel_per_image(V(n->out[0])), K, &m) || m > TERN_MAX_MACS)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "Gemm %s: more than %lld multiply-accumulates per image (TERN_MAX_MACS)", n->name, (long long)TERN_MAX_MACS);
    return TERN_STATUS_OK;
}

static enum tern_status infer_matmul(tern_graph *g, tern_node *n) {
    tern_value *A = V(n->in[0]), *B = V(n->in[1]);
    if (A->ndim < 2 || B->ndim != 2 || !B->data)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "MatMul %s: only activations [.., M, K] times a constant 2-D matrix are supported", n->name);
    if (A->dims[A->ndim - 1] != B->dims[0]) return FAIL("MatMul %s: inner dimensions differ", n->name);
    int64_t d[TERN_MAX_DIMS];
    memcpy(d, A->dims, sizeof d);
    d[A->ndim - 1] = B->dims[1];
    enum tern_status st = set_shape(g, n->out[0], A->ndim, d, TERN_DTYPE_F32);
    return st ? st : check_macs(g, n);
}

static enum tern_status infer_bn(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    for (int i = 1; i < 5; i++)
        if (!is_const(g, n->in[i]) || tern_value_numel(V(n->in[i])) != (x->ndim > 1 ? x->dims[1] : 1))
            return FAIL("BatchNormalization %s: parameter %d must be a constant per channel", n->name, i);
    return same_shape(g, n);
}

/* PRelu: the slope is a constant, one value or one per channel. ONNX broadcasts it from the
 * right, so per channel of [N,C,H,W] is [C,1,1] or [1,C,1,1] ([C] would be per column). */
static enum tern_status infer_prelu(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]), *s = V(n->in[1]);
    int64_t k = tern_value_numel(s), c = x->ndim > 1 ? x->dims[1] : 1;
    if (!is_const(g, n->in[1]) || s->dtype != TERN_DTYPE_F32)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "PRelu %s: the slope must be a float constant", n->name);
    int lead = s->ndim == x->ndim ? 1 : 0;   /* [1,C,...] */
    int per_channel = k == c && x->ndim >= 2 && (s->ndim == x->ndim - 1 || (lead && s->dims[0] == 1)) && s->dims[lead] == c;
    for (int i = lead + 1; per_channel && i < s->ndim; i++) per_channel = s->dims[i] == 1;
    if (k != 1 && !per_channel)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "PRelu %s: slope of %lld values (one, or one per channel of %lld, are supported)",
                           n->name, (long long)k, (long long)c);
    return same_shape(g, n);
}

static enum tern_status infer_clip(tern_graph *g, tern_node *n) {
    for (int i = 1; i < 3; i++)
        if (n->in[i] >= 0) {
            if (!is_const(g, n->in[i])) return tern_errorf(TERN_STATUS_UNSUPPORTED, "Clip %s: min/max must be constants", n->name);
            float v = ((float *)V(n->in[i])->data)[0];
            if (i == 1) n->a.clip_min = v; else n->a.clip_max = v;
        }
    return same_shape(g, n);
}

static enum tern_status infer_binary(tern_graph *g, tern_node *n) {
    tern_value *a = V(n->in[0]), *b = V(n->in[1]);
    int64_t d[TERN_MAX_DIMS];
    int nd = tern_nd_bcast_shape(a->dims, a->ndim, b->dims, b->ndim, d);
    if (nd < 0) return FAIL("%s %s: shapes of %s and %s do not broadcast", tern_ops[n->op].name, n->name, a->name, b->name);
    return set_shape(g, n->out[0], nd, d, a->dtype);
}

static enum tern_status fold_binary(tern_graph *g, tern_node *n) {
    tern_value *a = V(n->in[0]), *b = V(n->in[1]), *y = V(n->out[0]);
    if (a->dtype != b->dtype) return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s %s: mixed input types", tern_ops[n->op].name, n->name);
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    tern_nd_binary(n->op, a->dtype, a->data, a->dims, a->ndim, b->data, b->dims, b->ndim, y->dims, y->ndim, y->data);
    return TERN_STATUS_OK;
}

static int norm_axis(int64_t axis, int ndim) { /* out of any range: -1 (not a truncated int64) */
    if (axis < -TERN_MAX_DIMS || axis > TERN_MAX_DIMS) return -1;
    return (int)(axis < 0 ? axis + ndim : axis);
}

static enum tern_status infer_flatten(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    int axis = norm_axis(n->a.axis, x->ndim);
    if (axis < 0 || axis > x->ndim) return FAIL("Flatten %s: axis out of range", n->name);
    n->a.axis = axis;
    int64_t d[2] = {1, 1};
    for (int i = 0; i < x->ndim; i++) d[i >= axis] *= x->dims[i];
    return set_shape(g, n->out[0], 2, d, x->dtype);
}

static enum tern_status fold_copy(tern_graph *g, tern_node *n) { /* reshape-like: same bytes */
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    tern_value *x = V(n->in[0]);
    memcpy(V(n->out[0])->data, x->data, (size_t)tern_value_numel(x) * (size_t)tern_dtype_size(x->dtype));
    return TERN_STATUS_OK;
}

static enum tern_status infer_reshape(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    int64_t s[TERN_MAX_DIMS];
    int ns = read_ints(g, n->in[1], s, TERN_MAX_DIMS);
    if (ns < 0) return tern_errorf(TERN_STATUS_UNSUPPORTED, "Reshape %s: the target shape must be constant (after folding)", n->name);
    int64_t known = 1;
    int infer_at = -1;
    for (int i = 0; i < ns; i++) {
        if (s[i] == 0) s[i] = i < x->ndim ? x->dims[i] : 1;
        if (s[i] == -1) {
            if (infer_at >= 0) return FAIL("Reshape %s: more than one -1", n->name);
            infer_at = i;
        } else if (s[i] < -1) {
            return FAIL("Reshape %s: negative target dimension %lld", n->name, (long long)s[i]);
        } else if (s[i] > TERN_MAX_NUMEL || (known *= s[i]) > TERN_MAX_NUMEL) { /* both factors <= 2^30 */
            return tern_errorf(TERN_STATUS_UNSUPPORTED, "Reshape %s: target shape of more than %lld elements (TERN_MAX_NUMEL)", n->name, (long long)TERN_MAX_NUMEL);
        }
    }
    int64_t total = tern_value_numel(x);
    if (infer_at >= 0) s[infer_at] = known ? total / known : 0;
    int64_t prod = 1;
    for (int i = 0; i < ns; i++) prod *= s[i]; /* <= known * total: no overflow */
    if (prod != total) return FAIL("Reshape %s: %lld elements cannot take the target shape", n->name, (long long)total);
    return set_shape(g, n->out[0], ns, s, x->dtype);
}

static enum tern_status infer_squeeze(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    int64_t axes[TERN_MAX_DIMS];
    int na = n->a.naxes;
    memcpy(axes, n->a.axes, sizeof axes);
    if (n->in[1] >= 0 && (na = read_ints(g, n->in[1], axes, TERN_MAX_DIMS)) < 0)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s %s: axes must be constant", tern_ops[n->op].name, n->name);
    int64_t d[TERN_MAX_DIMS];
    int nd = 0;
    if (n->op == TERN_OP_UNSQUEEZE) {
        int out_nd = x->ndim + na, mark[TERN_MAX_DIMS] = {0};
        if (out_nd > TERN_MAX_DIMS) return FAIL("Unsqueeze %s: rank too large", n->name);
        for (int i = 0; i < na; i++) {
            int a = norm_axis(axes[i], out_nd);
            if (a < 0 || a >= out_nd || mark[a]) return FAIL("Unsqueeze %s: axis out of range or repeated", n->name);
            mark[a] = 1;
        }
        for (int i = 0, j = 0; i < out_nd; i++) d[nd++] = mark[i] ? 1 : x->dims[j++];
    } else {
        int mark[TERN_MAX_DIMS] = {0};
        for (int i = 0; i < na; i++) {
            int a = norm_axis(axes[i], x->ndim);
            if (a < 0 || a >= x->ndim || x->dims[a] != 1) return FAIL("Squeeze %s: axis %lld is not of size 1", n->name, (long long)axes[i]);
            mark[a] = 1;
        }
        for (int i = 0; i < x->ndim; i++)
            if (!(na ? mark[i] : x->dims[i] == 1)) d[nd++] = x->dims[i];
    }
    return set_shape(g, n->out[0], nd, d, x->dtype);
}

static enum tern_status infer_slice(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    int64_t st[TERN_MAX_DIMS], en[TERN_MAX_DIMS], ax[TERN_MAX_DIMS], sp[TERN_MAX_DIMS];
    int k;
    if (n->nin == 1) { /* opset < 10: attributes */
        k = n->a.nslice;
        memcpy(st, n->a.slice_starts, sizeof st);
        memcpy(en, n->a.slice_ends, sizeof en);
        if (n->a.naxes) memcpy(ax, n->a.axes, sizeof ax);
        else for (int i = 0; i < k; i++) ax[i] = i;
        for (int i = 0; i < k; i++) sp[i] = 1;
    } else {
        k = read_ints(g, n->in[1], st, TERN_MAX_DIMS);
        if (k < 0 || read_ints(g, n->in[2], en, TERN_MAX_DIMS) != k)
            return tern_errorf(TERN_STATUS_UNSUPPORTED, "Slice %s: starts/ends must be constants of equal length", n->name);
        if (n->in[3] >= 0) { if (read_ints(g, n->in[3], ax, TERN_MAX_DIMS) != k) return FAIL("Slice %s: bad axes", n->name); }
        else for (int i = 0; i < k; i++) ax[i] = i;
        if (n->in[4] >= 0) { if (read_ints(g, n->in[4], sp, TERN_MAX_DIMS) != k) return FAIL("Slice %s: bad steps", n->name); }
        else for (int i = 0; i < k; i++) sp[i] = 1;
    }
    int64_t d[TERN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        n->a.rs_start[i] = 0;
        n->a.rs_step[i] = 1;
        d[i] = x->dims[i];
    }
    for (int i = 0; i < k; i++) {
        int a = norm_axis(ax[i], x->ndim);
        if (a < 0 || a >= x->ndim || sp[i] == 0) return FAIL("Slice %s: bad axis or zero step", n->name);
        int64_t dim = x->dims[a], s = st[i], e = en[i], lim = dim > 1 ? dim : 1;
        /* a step beyond the dimension takes one element, as a step of the dimension does;
         * clamping keeps step * stride (in the executors) and -step in range */
        if (sp[i] > lim) sp[i] = lim;
        if (sp[i] < -lim) sp[i] = -lim;
        if (s < 0) s += dim;
        if (e < 0) e += dim;
        if (sp[i] > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
            d[a] = e > s ? (e - s + sp[i] - 1) / sp[i] : 0;
        } else {
            s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            d[a] = s > e ? (s - e - sp[i] - 1) / -sp[i] : 0;
        }
        n->a.rs_start[a] = s;
        n->a.rs_step[a] = sp[i];
    }
    return set_shape(g, n->out[0], x->ndim, d, x->dtype);
}

static enum tern_status fold_slice(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]), *y = V(n->out[0]);
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    if (tern_value_numel(y) > 0)
        tern_nd_slice(x->data, x->dims, x->ndim, tern_dtype_size(x->dtype), n->a.rs_start, n->a.rs_step, y->dims, y->data);
    return TERN_STATUS_OK;
}

static enum tern_status infer_pad(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    int64_t p[2 * TERN_MAX_DIMS];
    int np = n->a.npad_list;
    memcpy(p, n->a.pad_list, sizeof p);
    if (n->nin >= 2 && n->in[1] >= 0) {
        np = read_ints(g, n->in[1], p, 2 * TERN_MAX_DIMS);
        if (np < 0) return tern_errorf(TERN_STATUS_UNSUPPORTED, "Pad %s: pads must be constant (after folding)", n->name);
    }
    if (n->nin >= 3 && n->in[2] >= 0) {
        if (!is_const(g, n->in[2])) return tern_errorf(TERN_STATUS_UNSUPPORTED, "Pad %s: constant_value must be constant", n->name);
        n->a.pad_value = ((float *)V(n->in[2])->data)[0];
    }
    if (np != 2 * x->ndim) return FAIL("Pad %s: %d pads for a rank-%d input", n->name, np, x->ndim);
    int64_t d[TERN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        if (p[i] < 0 || p[i + x->ndim] < 0) return tern_errorf(TERN_STATUS_UNSUPPORTED, "Pad %s: negative pads are not supported", n->name);
        if (p[i] > TERN_MAX_NUMEL || p[i + x->ndim] > TERN_MAX_NUMEL)
            return tern_errorf(TERN_STATUS_UNSUPPORTED, "Pad %s: pads beyond %lld (TERN_MAX_NUMEL)", n->name, (long long)TERN_MAX_NUMEL);
        d[i] = x->dims[i] + p[i] + p[i + x->ndim]; /* three terms <= 2^30 */
    }
    memcpy(n->a.pad_list, p, sizeof p);
    n->a.npad_list = np;
    return set_shape(g, n->out[0], x->ndim, d, x->dtype);
}

static enum tern_status infer_concat(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    int axis = norm_axis(n->a.axis, x->ndim);
    if (axis < 0 || axis >= x->ndim) return FAIL("Concat %s: axis out of range", n->name);
    n->a.axis = axis;
    int64_t d[TERN_MAX_DIMS];
    memcpy(d, x->dims, sizeof d);
    d[axis] = 0;
    for (int i = 0; i < n->nin; i++) {
        if (n->in[i] < 0) return FAIL("Concat %s: input %d is empty", n->name, i);
        tern_value *v = V(n->in[i]);
        if (v->ndim != x->ndim) return FAIL("Concat %s: input ranks differ", n->name);
        for (int j = 0; j < x->ndim; j++)
            if (j != axis && v->dims[j] != x->dims[j]) return FAIL("Concat %s: input %s shape differs off the axis", n->name, v->name);
        d[axis] += v->dims[axis]; /* <= TERN_MAX_NODE_IN * TERN_MAX_NUMEL: no overflow */
    }
    return set_shape(g, n->out[0], x->ndim, d, x->dtype);
}

static enum tern_status fold_concat(tern_graph *g, tern_node *n) {
    for (int i = 0; i < n->nin; i++)
        if (V(n->in[i])->dtype != V(n->in[0])->dtype) return tern_errorf(TERN_STATUS_UNSUPPORTED, "Concat %s: mixed types", n->name);
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    int64_t at = 0;
    for (int i = 0; i < n->nin; i++) {
        tern_value *v = V(n->in[i]);
        tern_nd_concat_part(v->data, v->dims, v->ndim, tern_dtype_size(v->dtype), (int)n->a.axis, at, V(n->out[0])->dims, V(n->out[0])->data);
        at += v->dims[n->a.axis];
    }
    return TERN_STATUS_OK;
}

static enum tern_status infer_softmax(tern_graph *g, tern_node *n) { return same_shape(g, n); }

static enum tern_status infer_shape(tern_graph *g, tern_node *n) {
    int64_t d[1] = {V(n->in[0])->ndim};
    return set_shape(g, n->out[0], 1, d, TERN_DTYPE_I64);
}
static enum tern_status fold_shape(tern_graph *g, tern_node *n) {
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    memcpy(V(n->out[0])->data, V(n->in[0])->dims, sizeof(int64_t) * (size_t)V(n->in[0])->ndim);
    return TERN_STATUS_OK;
}

static enum tern_status infer_gather(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]), *ix = V(n->in[1]);
    int axis = norm_axis(n->a.axis, x->ndim);
    if (axis < 0 || axis >= x->ndim) return FAIL("Gather %s: axis out of range", n->name);
    n->a.axis = axis;
    int64_t d[TERN_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < axis; i++) d[nd++] = x->dims[i];
    for (int i = 0; i < ix->ndim; i++) d[nd++] = ix->dims[i];
    for (int i = axis + 1; i < x->ndim; i++) d[nd++] = x->dims[i];
    return set_shape(g, n->out[0], nd, d, x->dtype);
}
static enum tern_status fold_gather(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]), *ix = V(n->in[1]), *y = V(n->out[0]);
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    int axis = (int)n->a.axis, es = tern_dtype_size(x->dtype);
    int64_t outer = 1, inner = 1, ni = tern_value_numel(ix), dim = x->dims[axis];
    for (int i = 0; i < axis; i++) outer *= x->dims[i];
    for (int i = axis + 1; i < x->ndim; i++) inner *= x->dims[i];
    char *yc = y->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < ni; j++) {
            int64_t k = ix->dtype == TERN_DTYPE_I64 ? ((int64_t *)ix->data)[j] : f2i(((float *)ix->data)[j]);
            if (k < 0) k += dim;
            if (k < 0 || k >= dim) return FAIL("Gather %s: index %lld out of range", n->name, (long long)k);
            memcpy(yc, (char *)x->data + ((o * dim + k) * inner) * es, (size_t)(inner * es));
            yc += inner * es;
        }
    return TERN_STATUS_OK;
}

static enum tern_status infer_cos(tern_graph *g, tern_node *n) { /* ConstantOfShape */
    int64_t d[TERN_MAX_DIMS];
    int nd = read_ints(g, n->in[0], d, TERN_MAX_DIMS);
    if (nd < 0) return tern_errorf(TERN_STATUS_UNSUPPORTED, "ConstantOfShape %s: shape must be constant", n->name);
    return set_shape(g, n->out[0], nd, d, n->a.fill_i64 ? TERN_DTYPE_I64 : TERN_DTYPE_F32);
}
static enum tern_status fold_cos(tern_graph *g, tern_node *n) {
    tern_value *y = V(n->out[0]);
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    for (int64_t i = 0, cnt = tern_value_numel(y); i < cnt; i++)
        if (y->dtype == TERN_DTYPE_I64) ((int64_t *)y->data)[i] = f2i(n->a.fill);
        else ((float *)y->data)[i] = (float)n->a.fill;
    return TERN_STATUS_OK;
}

static enum tern_status infer_cast(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    int to = n->a.to == 1 ? TERN_DTYPE_F32 : TERN_DTYPE_I64; /* ints of any width are held as int64 */
    if (n->a.to == 10 || n->a.to == 11 || n->a.to == 16)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "Cast %s: cast to type %lld is not supported", n->name, (long long)n->a.to);
    return set_shape(g, n->out[0], x->ndim, x->dims, to);
}
static enum tern_status fold_cast(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]), *y = V(n->out[0]);
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    for (int64_t i = 0, cnt = tern_value_numel(x); i < cnt; i++) {
        if (y->dtype == TERN_DTYPE_I64)
            ((int64_t *)y->data)[i] = x->dtype == TERN_DTYPE_I64 ? ((int64_t *)x->data)[i] : f2i(((float *)x->data)[i]);
        else
            ((float *)y->data)[i] = x->dtype == TERN_DTYPE_I64 ? (float)((int64_t *)x->data)[i] : ((float *)x->data)[i];
    }
    return TERN_STATUS_OK;
}

static enum tern_status infer_transpose(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    if (n->a.nperm == 0) {
        n->a.nperm = x->ndim;
        for (int i = 0; i < x->ndim; i++) n->a.perm[i] = x->ndim - 1 - i;
    }
    if (n->a.nperm != x->ndim) return FAIL("Transpose %s: perm has %d entries for rank %d", n->name, n->a.nperm, x->ndim);
    int64_t d[TERN_MAX_DIMS];
    int seen[TERN_MAX_DIMS] = {0};
    for (int i = 0; i < x->ndim; i++) {
        if (n->a.perm[i] < 0 || n->a.perm[i] >= x->ndim || seen[n->a.perm[i]]++) return FAIL("Transpose %s: bad perm", n->name);
        d[i] = x->dims[n->a.perm[i]];
    }
    return set_shape(g, n->out[0], x->ndim, d, x->dtype);
}
static enum tern_status fold_transpose(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    tern_nd_transpose(x->data, x->dims, x->ndim, tern_dtype_size(x->dtype), n->a.perm, V(n->out[0])->data);
    return TERN_STATUS_OK;
}

static enum tern_status infer_range(tern_graph *g, tern_node *n) {
    int64_t s, l, d;
    if (read_ints(g, n->in[0], &s, 1) != 1 || read_ints(g, n->in[1], &l, 1) != 1 || read_ints(g, n->in[2], &d, 1) != 1 || d == 0)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "Range %s: start/limit/delta must be constant integers, delta != 0", n->name);
    int64_t span, cnt;
    if (__builtin_sub_overflow(l, s, &span) || tern_add_ovf(span, d + (d > 0 ? -1 : 1), &span))
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "Range %s: more than %lld elements (TERN_MAX_NUMEL)", n->name, (long long)TERN_MAX_NUMEL);
    cnt = d == -1 && span == INT64_MIN ? INT64_MAX : span / d;
    int64_t dims[1] = {cnt > 0 ? cnt : 0};
    return set_shape(g, n->out[0], 1, dims, V(n->in[0])->dtype);
}
static enum tern_status fold_range(tern_graph *g, tern_node *n) {
    int64_t s, d;
    read_ints(g, n->in[0], &s, 1);
    read_ints(g, n->in[2], &d, 1);
    tern_value *y = V(n->out[0]);
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    for (int64_t i = 0; i < y->dims[0]; i++)
        if (y->dtype == TERN_DTYPE_I64) ((int64_t *)y->data)[i] = s + i * d;
        else ((float *)y->data)[i] = (float)(s + i * d);
    return TERN_STATUS_OK;
}

static enum tern_status fold_unary(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    if (n->op == TERN_OP_IDENTITY) return fold_copy(g, n);
    if (x->dtype != TERN_DTYPE_F32) return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s %s: integer input", tern_ops[n->op].name, n->name);
    enum tern_status st = alloc_data(g, n);
    if (st) return st;
    const float *a = x->data;
    float *y = V(n->out[0])->data;
    for (int64_t i = 0, cnt = tern_value_numel(x); i < cnt; i++) y[i] = tern_unary_f32(n, a[i]);
    return TERN_STATUS_OK;
}

float tern_unary_f32(const tern_node *n, float v) {
    switch (n->op) {
    case TERN_OP_RELU: return v > 0 ? v : 0;
    case TERN_OP_LEAKYRELU: return v > 0 ? v : v * n->a.alpha;
    case TERN_OP_CLIP: return v < n->a.clip_min ? n->a.clip_min : v > n->a.clip_max ? n->a.clip_max : v;
    case TERN_OP_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case TERN_OP_HARDSIGMOID: { float t = n->a.alpha * v + n->a.beta; return t < 0 ? 0 : t > 1 ? 1 : t; }
    case TERN_OP_HARDSWISH: { float t = v / 6.0f + 0.5f; return v * (t < 0 ? 0 : t > 1 ? 1 : t); }
    case TERN_OP_TANH: return tanhf(v);
    case TERN_OP_ERF: return erff(v);
    case TERN_OP_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    default: return v;
    }
}

/* ReduceMean over some axes (never the batch): the reduced axes are kept as a bit mask in
 * axes[0] for the executor, naxes = -1 marking it resolved. */
static enum tern_status infer_reducemean(tern_graph *g, tern_node *n) {
    tern_value *x = V(n->in[0]);
    if (n->nin > 1 && n->in[1] >= 0)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "ReduceMean %s: axes as an input (opset 18) is not supported", n->name);
    if (x->dtype != TERN_DTYPE_F32) return tern_errorf(TERN_STATUS_UNSUPPORTED, "ReduceMean %s: integer input", n->name);
    int64_t mask = 0;
    if (n->a.naxes < 0) mask = n->a.axes[0];
    else if (n->a.naxes == 0) mask = ((int64_t)1 << x->ndim) - 1;
    for (int i = 0; i < n->a.naxes; i++) {
        int a = norm_axis(n->a.axes[i], x->ndim);
        if (a < 0 || a >= x->ndim) return FAIL("ReduceMean %s: axis %lld out of range", n->name, (long long)n->a.axes[i]);
        mask |= (int64_t)1 << a;
    }
    if (mask & 1) return tern_errorf(TERN_STATUS_UNSUPPORTED, "ReduceMean %s: reducing the batch axis is not supported", n->name);
    n->a.axes[0] = mask;
    n->a.naxes = -1;
    int64_t d[TERN_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (!(mask >> i & 1)) d[nd++] = x->dims[i];
        else if (n->a.keepdims) d[nd++] = 1;
    return set_shape(g, n->out[0], nd, d, x->dtype);
}

static enum tern_status infer_unsupported_runtime(tern_graph *g, tern_node *n) {
    (void)g;
    return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s %s: only supported on constant inputs (a shape subgraph)", tern_ops[n->op].name, n->name);
}

const tern_op_info tern_ops[TERN_OP_COUNT] = {
    [TERN_OP_CONV] = {"Conv", infer_conv, NULL, tern_fp32_conv},
    [TERN_OP_GEMM] = {"Gemm", infer_gemm, NULL, tern_fp32_gemm},
    [TERN_OP_MATMUL] = {"MatMul", infer_matmul, NULL, tern_fp32_matmul},
    [TERN_OP_BATCHNORM] = {"BatchNormalization", infer_bn, NULL, tern_fp32_batchnorm},
    [TERN_OP_RELU] = {"Relu", same_shape, fold_unary, tern_fp32_unary},
    [TERN_OP_LEAKYRELU] = {"LeakyRelu", same_shape, fold_unary, tern_fp32_unary},
    [TERN_OP_CLIP] = {"Clip", infer_clip, fold_unary, tern_fp32_unary},
    [TERN_OP_ADD] = {"Add", infer_binary, fold_binary, tern_fp32_binary},
    [TERN_OP_SUB] = {"Sub", infer_binary, fold_binary, tern_fp32_binary},
    [TERN_OP_MUL] = {"Mul", infer_binary, fold_binary, tern_fp32_binary},
    [TERN_OP_DIV] = {"Div", infer_binary, fold_binary, tern_fp32_binary},
    [TERN_OP_MAXPOOL] = {"MaxPool", infer_pool, NULL, tern_fp32_pool},
    [TERN_OP_AVGPOOL] = {"AveragePool", infer_pool, NULL, tern_fp32_pool},
    [TERN_OP_GLOBALAVGPOOL] = {"GlobalAveragePool", infer_pool, NULL, tern_fp32_pool},
    [TERN_OP_FLATTEN] = {"Flatten", infer_flatten, fold_copy, tern_fp32_reshape},
    [TERN_OP_RESHAPE] = {"Reshape", infer_reshape, fold_copy, tern_fp32_reshape},
    [TERN_OP_SLICE] = {"Slice", infer_slice, fold_slice, tern_fp32_slice},
    [TERN_OP_PAD] = {"Pad", infer_pad, NULL, tern_fp32_pad},
    [TERN_OP_CONCAT] = {"Concat", infer_concat, fold_concat, tern_fp32_concat},
    [TERN_OP_SOFTMAX] = {"Softmax", infer_softmax, NULL, tern_fp32_softmax},
    [TERN_OP_IDENTITY] = {"Identity", same_shape, fold_unary, tern_fp32_unary},
    [TERN_OP_SHAPE] = {"Shape", infer_shape, fold_shape, NULL},
    [TERN_OP_GATHER] = {"Gather", infer_gather, fold_gather, NULL},
    [TERN_OP_UNSQUEEZE] = {"Unsqueeze", infer_squeeze, fold_copy, tern_fp32_reshape},
    [TERN_OP_SQUEEZE] = {"Squeeze", infer_squeeze, fold_copy, tern_fp32_reshape},
    [TERN_OP_CONSTANTOFSHAPE] = {"ConstantOfShape", infer_cos, fold_cos, NULL},
    [TERN_OP_CAST] = {"Cast", infer_cast, fold_cast, NULL},
    [TERN_OP_TRANSPOSE] = {"Transpose", infer_transpose, fold_transpose, tern_fp32_transpose},
    [TERN_OP_RANGE] = {"Range", infer_range, fold_range, NULL},
    [TERN_OP_CONSTANT] = {"Constant", infer_unsupported_runtime, NULL, NULL},
    [TERN_OP_SIGMOID] = {"Sigmoid", same_shape, fold_unary, tern_fp32_unary},
    [TERN_OP_HARDSIGMOID] = {"HardSigmoid", same_shape, fold_unary, tern_fp32_unary},
    [TERN_OP_HARDSWISH] = {"HardSwish", same_shape, fold_unary, tern_fp32_unary},
    [TERN_OP_TANH] = {"Tanh", same_shape, fold_unary, tern_fp32_unary},
    [TERN_OP_REDUCEMEAN] = {"ReduceMean", infer_reducemean, NULL, tern_fp32_reducemean},
    [TERN_OP_PRELU] = {"PRelu", infer_prelu, NULL, tern_fp32_prelu},
    [TERN_OP_ERF] = {"Erf", same_shape, fold_unary, tern_fp32_unary},
    [TERN_OP_GELU] = {"Gelu", same_shape, fold_unary, tern_fp32_unary},   /* exact (erf) form */
};

int tern_op_lookup(const char *name) {
    if (strcmp(name, "Dropout") == 0) return TERN_OP_IDENTITY;
    for (int i = 0; i < TERN_OP_COUNT; i++)
        if (tern_ops[i].name && strcmp(tern_ops[i].name, name) == 0) return i;
    return -1;
}
