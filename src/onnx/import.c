/* ONNX importer: protobuf-c parses the file (code generated at build time from Debian's
 * onnx.proto); this file validates it and builds the tern graph, then runs the graph passes.
 * Anything not understood is an error naming the file, the node and the op or attribute. */
#include "graph/graph.h"
#include "onnx.pb-c.h"
#include <math.h>
#include <stdarg.h>
#include <string.h>

typedef Onnx__AttributeProto Attr;

typedef struct {
    const char *path;
    tern_graph *g;
    int opset;
    int *slot;          /* [cap] name hash table: value id + 1, 0 = empty (linear probing) */
    size_t cap;
} importer;

/* Value names are looked up through a hash table, so that a graph of TERN_MAX_NODES nodes
 * imports in linear time; every name is defined once (ONNX's SSA rule). */
static size_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return (size_t)h;
}
static int *name_slot(importer *im, const char *name) {
    size_t i = name_hash(name) & (im->cap - 1);
    while (im->slot[i] && strcmp(im->g->values[im->slot[i] - 1].name, name) != 0) i = (i + 1) & (im->cap - 1);
    return &im->slot[i];
}
static int find_value(importer *im, const char *name) { return *name_slot(im, name) - 1; }
/* Define value `name` (what: "initializer", "input", "node output", for the message); it must be new. */
static enum tern_status define_value(importer *im, const char *name, const char *what, int *id) {
    if (!name || !*name) return tern_errorf(TERN_STATUS_FORMAT, "%s: %s without a name", im->path, what);
    int *sl = name_slot(im, name);
    if (*sl) return tern_errorf(TERN_STATUS_FORMAT, "%s: value name '%s' is defined twice (again as %s)", im->path, name, what);
    *id = tern_graph_add_value(im->g, name);
    if (*id < 0) return TERN_STATUS_NOMEM;
    *sl = *id + 1;
    return TERN_STATUS_OK;
}

static const Attr *find_attr(const Onnx__NodeProto *nd, const char *name) {
    for (size_t i = 0; i < nd->n_attribute; i++)
        if (nd->attribute[i]->name && strcmp(nd->attribute[i]->name, name) == 0) return nd->attribute[i];
    return NULL;
}

static int64_t attr_i(const Onnx__NodeProto *nd, const char *name, int64_t def) {
    const Attr *a = find_attr(nd, name);
    return a && a->has_i ? a->i : def;
}
static float attr_f(const Onnx__NodeProto *nd, const char *name, float def) {
    const Attr *a = find_attr(nd, name);
    return a && a->has_f ? a->f : def;
}
/* Copies up to max ints; returns the count, -1 if absent, -2 if too many. */
static int attr_ints(const Onnx__NodeProto *nd, const char *name, int64_t *out, int max) {
    const Attr *a = find_attr(nd, name);
    if (!a) return -1;
    if ((int)a->n_ints > max) return -2;
    for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
    return (int)a->n_ints;
}
static int attr_str_is(const Onnx__NodeProto *nd, const char *name, const char *val, const char *def) {
    const Attr *a = find_attr(nd, name);
    if (!a || !a->has_s) return strcmp(def, val) == 0;
    return a->s.len == strlen(val) && memcmp(a->s.data, val, a->s.len) == 0;
}

#define NODE_ERR(st, ...) node_error(im, nd, st, __VA_ARGS__)
static enum tern_status node_error(importer *im, const Onnx__NodeProto *nd, enum tern_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum tern_status node_error(importer *im, const Onnx__NodeProto *nd, enum tern_status st, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tern_errorf(st, "%s: node '%s' (%s): %s", im->path, nd->name ? nd->name : "", nd->op_type ? nd->op_type : "?", msg);
}

/* Convert a TensorProto into value v's shape and data (float32 or int64). */
static enum tern_status load_tensor(importer *im, const Onnx__TensorProto *t, const char *what, tern_value *v) {
    const char *nm = t->name && *t->name ? t->name : what;
    if (t->n_dims > TERN_MAX_DIMS) return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: tensor '%s' has rank %zu (max %d)", im->path, nm, t->n_dims, TERN_MAX_DIMS);
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: tensor '%s' uses external data files, which tern does not read", im->path, nm);
    int64_t n = 1;
    v->ndim = (int)t->n_dims;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0) return tern_errorf(TERN_STATUS_FORMAT, "%s: tensor '%s' has negative dimension %lld", im->path, nm, (long long)t->dims[i]);
        if (t->dims[i] > TERN_MAX_NUMEL || (n *= t->dims[i]) > TERN_MAX_NUMEL) /* n <= 2^30 before, dims <= 2^30: no overflow */
            return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: tensor '%s' has more than %lld elements (TERN_MAX_NUMEL)", im->path, nm, (long long)TERN_MAX_NUMEL);
        v->dims[i] = t->dims[i];
    }
    int dt = t->has_data_type ? t->data_type : 0;
    int esize;
    switch (dt) {
    case 1: esize = 4; v->dtype = TERN_DTYPE_F32; break;   /* FLOAT */
    case 11: esize = 8; v->dtype = TERN_DTYPE_F32; break;  /* DOUBLE -> float */
    case 7: esize = 8; v->dtype = TERN_DTYPE_I64; break;   /* INT64 */
    case 6: esize = 4; v->dtype = TERN_DTYPE_I64; break;   /* INT32 -> int64 */
    case 9: case 3: case 2: esize = 1; v->dtype = TERN_DTYPE_I64; break; /* BOOL/INT8/UINT8 -> int64 */
    default: return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: tensor '%s' has data type %d; tern reads float32/float64/int64/int32/int8/uint8/bool", im->path, nm, dt);
    }
    /* the data must be there before anything is allocated for it */
    size_t have = t->has_raw_data ? t->raw_data.len / (size_t)esize
                : dt == 1 ? t->n_float_data : dt == 11 ? t->n_double_data : dt == 7 ? t->n_int64_data : t->n_int32_data;
    if (t->has_raw_data && t->raw_data.len != (size_t)n * (size_t)esize)
        return tern_errorf(TERN_STATUS_FORMAT, "%s: tensor '%s': raw data has %zu bytes, shape needs %lld", im->path, nm, t->raw_data.len, (long long)n * esize);
    if (have != (size_t)n)
        return tern_errorf(TERN_STATUS_FORMAT, "%s: tensor '%s' holds %zu values, its shape needs %lld", im->path, nm, have, (long long)n);
    v->data = tern_calloc((size_t)(n ? n : 1), (size_t)tern_dtype_size(v->dtype));
    if (!v->data) return TERN_STATUS_NOMEM;
    v->shape_known = 1;
    if (t->has_raw_data) {
        const uint8_t *r = t->raw_data.data;
        for (int64_t i = 0; i < n; i++, r += esize) {
            if (dt == 1) memcpy((float *)v->data + i, r, 4);
            else if (dt == 11) { double d; memcpy(&d, r, 8); ((float *)v->data)[i] = (float)d; }
            else if (dt == 7) memcpy((int64_t *)v->data + i, r, 8);
            else if (dt == 6) { int32_t d; memcpy(&d, r, 4); ((int64_t *)v->data)[i] = d; }
            else if (dt == 3) ((int64_t *)v->data)[i] = (int8_t)*r;
            else ((int64_t *)v->data)[i] = *r;
        }
        return TERN_STATUS_OK;
    }
    switch (dt) {
    case 1: if (n) memcpy(v->data, t->float_data, 4 * (size_t)n); break;
    case 11: for (int64_t i = 0; i < n; i++) ((float *)v->data)[i] = (float)t->double_data[i]; break;
    case 7: if (n) memcpy(v->data, t->int64_data, 8 * (size_t)n); break;
    default: for (int64_t i = 0; i < n; i++) ((int64_t *)v->data)[i] = t->int32_data[i]; break;
    }
    return TERN_STATUS_OK;
}

/* Attributes each op accepts (others are rejected, so nothing is silently ignored). */
static const char *allowed_attrs(enum tern_op op) {
    switch (op) {
    case TERN_OP_CONV: return " kernel_shape strides pads dilations group auto_pad ";
    case TERN_OP_MAXPOOL: return " kernel_shape strides pads dilations ceil_mode auto_pad storage_order ";
    case TERN_OP_AVGPOOL: return " kernel_shape strides pads ceil_mode count_include_pad auto_pad ";
    case TERN_OP_GEMM: return " alpha beta transA transB ";
    case TERN_OP_BATCHNORM: return " epsilon momentum spatial training_mode ";
    case TERN_OP_LEAKYRELU: return " alpha ";
    case TERN_OP_HARDSIGMOID: return " alpha beta ";
    case TERN_OP_REDUCEMEAN: return " axes keepdims ";
    case TERN_OP_CLIP: return " min max ";
    case TERN_OP_FLATTEN: case TERN_OP_CONCAT: case TERN_OP_SOFTMAX: case TERN_OP_GATHER: return " axis ";
    case TERN_OP_CAST: return " to saturate ";
    case TERN_OP_TRANSPOSE: return " perm ";
    case TERN_OP_SQUEEZE: case TERN_OP_UNSQUEEZE: return " axes ";
    case TERN_OP_SLICE: return " starts ends axes ";
    case TERN_OP_PAD: return " mode pads value ";
    case TERN_OP_CONSTANTOFSHAPE: return " value ";
    case TERN_OP_RESHAPE: return " allowzero ";
    case TERN_OP_IDENTITY: return " ratio seed training_mode ";
    case TERN_OP_CONSTANT: return " value value_float value_int value_floats value_ints ";
    default: return " ";
    }
}

static enum tern_status parse_window(importer *im, const Onnx__NodeProto *nd, tern_attrs *a) {
    int64_t tmp[8];
    int k = attr_ints(nd, "kernel_shape", a->kernel, 2);
    if (k == -2 || k == 0 || k == 1) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "only 2-D kernels are supported");
    if (k == 2 && (a->kernel[0] < 1 || a->kernel[1] < 1)) return NODE_ERR(TERN_STATUS_FORMAT, "kernel_shape must be >= 1");
    a->strides[0] = a->strides[1] = a->dilations[0] = a->dilations[1] = 1;
    if (attr_ints(nd, "strides", tmp, 2) == 2) { a->strides[0] = tmp[0]; a->strides[1] = tmp[1]; }
    else if (find_attr(nd, "strides")) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "strides must have 2 values");
    if (attr_ints(nd, "dilations", tmp, 2) == 2) { a->dilations[0] = tmp[0]; a->dilations[1] = tmp[1]; }
    else if (find_attr(nd, "dilations")) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "dilations must have 2 values");
    int np = attr_ints(nd, "pads", tmp, 4);
    if (np == 4) memcpy(a->pads, tmp, sizeof a->pads);
    else if (np != -1) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "pads must have 4 values");
    for (int i = 0; i < 2; i++)
        if (a->strides[i] < 1 || a->dilations[i] < 1) return NODE_ERR(TERN_STATUS_FORMAT, "strides and dilations must be >= 1");
    for (int i = 0; i < 4; i++)
        if (a->pads[i] < 0) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "negative pads");
    /* bounded, so that the output-size arithmetic cannot overflow */
    for (int i = 0; i < 2; i++)
        if (a->kernel[i] > TERN_MAX_NUMEL || a->strides[i] > TERN_MAX_NUMEL || a->dilations[i] > TERN_MAX_NUMEL ||
            a->pads[i] > TERN_MAX_NUMEL || a->pads[i + 2] > TERN_MAX_NUMEL)
            return NODE_ERR(TERN_STATUS_UNSUPPORTED, "kernel_shape, strides, dilations or pads beyond %lld (TERN_MAX_NUMEL)", (long long)TERN_MAX_NUMEL);
    if (attr_str_is(nd, "auto_pad", "NOTSET", "NOTSET")) a->auto_pad = 0;
    else if (attr_str_is(nd, "auto_pad", "VALID", "NOTSET")) a->auto_pad = 1;
    else if (attr_str_is(nd, "auto_pad", "SAME_UPPER", "NOTSET")) a->auto_pad = 2;
    else if (attr_str_is(nd, "auto_pad", "SAME_LOWER", "NOTSET")) a->auto_pad = 3;
    else return NODE_ERR(TERN_STATUS_UNSUPPORTED, "unknown auto_pad");
    a->ceil_mode = (int)attr_i(nd, "ceil_mode", 0);
    a->count_include_pad = (int)attr_i(nd, "count_include_pad", 0);
    return TERN_STATUS_OK;
}

static enum tern_status parse_attrs(importer *im, const Onnx__NodeProto *nd, tern_node *n) {
    tern_attrs *a = &n->a;
    const char *ok = allowed_attrs(n->op);
    for (size_t i = 0; i < nd->n_attribute; i++) {
        char key[128];
        snprintf(key, sizeof key, " %s ", nd->attribute[i]->name ? nd->attribute[i]->name : "");
        if (!strstr(ok, key)) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "attribute '%s' is not supported", nd->attribute[i]->name);
    }
    switch (n->op) {
    case TERN_OP_CONV:
        a->group = attr_i(nd, "group", 1);
        return parse_window(im, nd, a);
    case TERN_OP_MAXPOOL:
        if (attr_i(nd, "storage_order", 0) != 0) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "storage_order=1");
        if (nd->n_output > 1) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "the Indices output");
        /* fall through */
    case TERN_OP_AVGPOOL:
        return parse_window(im, nd, a);
    case TERN_OP_GEMM:
        a->alpha = attr_f(nd, "alpha", 1.0f);
        a->beta = attr_f(nd, "beta", 1.0f);
        a->trans_a = (int)attr_i(nd, "transA", 0);
        a->trans_b = (int)attr_i(nd, "transB", 0);
        return TERN_STATUS_OK;
    case TERN_OP_BATCHNORM:
        a->epsilon = attr_f(nd, "epsilon", 1e-5f);
        if (attr_i(nd, "training_mode", 0)) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "training_mode=1");
        return TERN_STATUS_OK;
    case TERN_OP_LEAKYRELU:
        a->alpha = attr_f(nd, "alpha", 0.01f);
        return TERN_STATUS_OK;
    case TERN_OP_HARDSIGMOID:
        a->alpha = attr_f(nd, "alpha", 0.2f);
        a->beta = attr_f(nd, "beta", 0.5f);
        return TERN_STATUS_OK;
    case TERN_OP_REDUCEMEAN: {
        int k = attr_ints(nd, "axes", a->axes, TERN_MAX_DIMS);
        if (k == -2) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "too many axes");
        a->naxes = k < 0 ? 0 : k;
        a->keepdims = (int)attr_i(nd, "keepdims", 1);
        return TERN_STATUS_OK;
    }
    case TERN_OP_CLIP:
        a->clip_min = attr_f(nd, "min", -INFINITY);
        a->clip_max = attr_f(nd, "max", INFINITY);
        return TERN_STATUS_OK;
    case TERN_OP_FLATTEN: a->axis = attr_i(nd, "axis", 1); return TERN_STATUS_OK;
    case TERN_OP_CONCAT:
        if (!find_attr(nd, "axis")) return NODE_ERR(TERN_STATUS_FORMAT, "missing required attribute axis");
        a->axis = attr_i(nd, "axis", 0);
        return TERN_STATUS_OK;
    case TERN_OP_SOFTMAX:
        a->axis = attr_i(nd, "axis", im->opset < 13 ? 1 : -1);
        a->ceil_mode = im->opset < 13; /* reused: 1 = pre-13 semantics (softmax over the flattened tail) */
        return TERN_STATUS_OK;
    case TERN_OP_GATHER: a->axis = attr_i(nd, "axis", 0); return TERN_STATUS_OK;
    case TERN_OP_CAST: a->to = attr_i(nd, "to", 1); return TERN_STATUS_OK;
    case TERN_OP_TRANSPOSE: {
        int k = attr_ints(nd, "perm", a->perm, TERN_MAX_DIMS);
        if (k == -2) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "perm too long");
        a->nperm = k < 0 ? 0 : k;
        return TERN_STATUS_OK;
    }
    case TERN_OP_SQUEEZE: case TERN_OP_UNSQUEEZE: {
        int k = attr_ints(nd, "axes", a->axes, TERN_MAX_DIMS);
        if (k == -2) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "too many axes");
        a->naxes = k < 0 ? 0 : k;
        return TERN_STATUS_OK;
    }
    case TERN_OP_SLICE: {
        if (nd->n_input > 1) return TERN_STATUS_OK;
        int k1 = attr_ints(nd, "starts", a->slice_starts, TERN_MAX_DIMS), k2 = attr_ints(nd, "ends", a->slice_ends, TERN_MAX_DIMS);
        int k3 = attr_ints(nd, "axes", a->axes, TERN_MAX_DIMS);
        if (k1 < 0 || k1 != k2 || (k3 >= 0 && k3 != k1)) return NODE_ERR(TERN_STATUS_FORMAT, "starts/ends/axes missing or of different lengths");
        a->nslice = k1;
        a->naxes = k3 < 0 ? 0 : k3;
        return TERN_STATUS_OK;
    }
    case TERN_OP_PAD: {
        if (!attr_str_is(nd, "mode", "constant", "constant")) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "only mode=constant is supported");
        int k = attr_ints(nd, "pads", a->pad_list, 2 * TERN_MAX_DIMS);
        if (k == -2) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "too many pads");
        a->npad_list = k < 0 ? 0 : k;
        a->pad_value = attr_f(nd, "value", 0.0f);
        return TERN_STATUS_OK;
    }
    case TERN_OP_CONSTANTOFSHAPE: {
        const Attr *v = find_attr(nd, "value");
        a->fill = 0;
        a->fill_i64 = 0;
        if (v && v->t) {
            tern_value tmp;
            memset(&tmp, 0, sizeof tmp);
            enum tern_status st = load_tensor(im, v->t, "value", &tmp);
            if (st) { free(tmp.data); return st; }
            a->fill_i64 = tmp.dtype == TERN_DTYPE_I64;
            a->fill = a->fill_i64 ? (double)((int64_t *)tmp.data)[0] : ((float *)tmp.data)[0];
            free(tmp.data);
        }
        return TERN_STATUS_OK;
    }
    case TERN_OP_RESHAPE:
        if (attr_i(nd, "allowzero", 0)) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "allowzero=1");
        return TERN_STATUS_OK;
    default:
        return TERN_STATUS_OK;
    }
}

/* A Constant node becomes a constant value. */
static enum tern_status import_constant(importer *im, const Onnx__NodeProto *nd, int vid) {
    tern_value *v = &im->g->values[vid];
    const Attr *a;
    if ((a = find_attr(nd, "value")) && a->t) return load_tensor(im, a->t, nd->output[0], v);
    v->shape_known = 1;
    if ((a = find_attr(nd, "value_float")) || (a = find_attr(nd, "value_floats"))) {
        int list = a->n_floats > 0 || !a->has_f;
        size_t n = list ? a->n_floats : 1;
        v->ndim = list ? 1 : 0;
        v->dims[0] = (int64_t)n;
        v->dtype = TERN_DTYPE_F32;
        if (!(v->data = tern_calloc(n ? n : 1, sizeof(float)))) return TERN_STATUS_NOMEM;
        for (size_t i = 0; i < n; i++) ((float *)v->data)[i] = list ? a->floats[i] : a->f;
        return TERN_STATUS_OK;
    }
    if ((a = find_attr(nd, "value_int")) || (a = find_attr(nd, "value_ints"))) {
        int list = a->n_ints > 0 || !a->has_i;
        size_t n = list ? a->n_ints : 1;
        v->ndim = list ? 1 : 0;
        v->dims[0] = (int64_t)n;
        v->dtype = TERN_DTYPE_I64;
        if (!(v->data = tern_calloc(n ? n : 1, sizeof(int64_t)))) return TERN_STATUS_NOMEM;
        for (size_t i = 0; i < n; i++) ((int64_t *)v->data)[i] = list ? a->ints[i] : a->i;
        return TERN_STATUS_OK;
    }
    return NODE_ERR(TERN_STATUS_UNSUPPORTED, "Constant without a supported value attribute");
}

/* metadata_props keys tern.mean/std/bgr/resize/crop (graph.h): a bad value is an error naming it. */
static enum tern_status read_meta(importer *im, const Onnx__ModelProto *m) {
    tern_graph_meta *t = &im->g->meta;
    for (size_t i = 0; i < m->n_metadata_props; i++) {
        const char *k = m->metadata_props[i]->key, *v = m->metadata_props[i]->value;
        if (!k || strncmp(k, "tern.", 5)) continue;
        char end = 0;
        int ok = 0;
        if (!v) v = "";
        if (!strcmp(k, "tern.mean")) ok = t->has_mean = sscanf(v, "%f,%f,%f%c", &t->mean[0], &t->mean[1], &t->mean[2], &end) == 3;
        else if (!strcmp(k, "tern.std"))
            ok = t->has_std = sscanf(v, "%f,%f,%f%c", &t->std[0], &t->std[1], &t->std[2], &end) == 3 && t->std[0] > 0 && t->std[1] > 0 && t->std[2] > 0;
        else if (!strcmp(k, "tern.bgr")) ok = t->has_bgr = sscanf(v, "%d%c", &t->bgr, &end) == 1 && (t->bgr == 0 || t->bgr == 1);
        else if (!strcmp(k, "tern.resize")) ok = t->has_resize = sscanf(v, "%d%c", &t->resize, &end) == 1 && t->resize >= 0 && t->resize <= 32768;
        else if (!strcmp(k, "tern.crop")) ok = t->has_crop = sscanf(v, "%d%c", &t->crop, &end) == 1 && t->crop >= 0 && t->crop <= 32768;
        else continue; /* other tern.* keys: not ours to judge */
        if (!ok) return tern_errorf(TERN_STATUS_FORMAT, "%s: metadata_props '%s' has a bad value '%s'", im->path, k, v);
    }
    return TERN_STATUS_OK;
}

static enum tern_status build(importer *im, const Onnx__ModelProto *m) {
    tern_graph *g = im->g;
    const Onnx__GraphProto *gr = m->graph;
    if (!gr) return tern_errorf(TERN_STATUS_FORMAT, "%s: the model has no graph", im->path);
    int64_t opset = 0;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *d = m->opset_import[i]->domain;
        if (!d || !*d || strcmp(d, "ai.onnx") == 0) opset = m->opset_import[i]->version;
    }
    if (opset < 9 || opset > 17) /* compared as int64: 2^40+13 is not 13 */
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: opset %lld is not supported (tern reads opsets 9 to 17)", im->path, (long long)opset);
    im->opset = (int)opset;
    if (gr->n_node > TERN_MAX_NODES)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: the graph has %zu nodes, more than %d (TERN_MAX_NODES)", im->path, gr->n_node, TERN_MAX_NODES);
    /* the name table: every value is an initializer, an input or a node output */
    size_t nnames = gr->n_initializer + gr->n_input;
    for (size_t i = 0; i < gr->n_node; i++) nnames += gr->node[i]->n_output;
    for (im->cap = 64; im->cap < 2 * nnames; im->cap *= 2) {}
    if (!(im->slot = tern_calloc(im->cap, sizeof *im->slot))) return TERN_STATUS_NOMEM;

    for (size_t i = 0; i < gr->n_initializer; i++) {
        const Onnx__TensorProto *t = gr->initializer[i];
        int id;
        enum tern_status st = define_value(im, t->name, "initializer", &id);
        if (st) return st;
        st = load_tensor(im, t, "initializer", &g->values[id]);
        if (st) return st;
    }
    for (size_t i = 0; i < gr->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gr->input[i];
        if (!vi->name || find_value(im, vi->name) >= 0) continue; /* an initializer (listed as an input before IR 4) */
        if (g->input >= 0) return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: the model has more than one input (%s, %s); tern runs single-input image models", im->path, g->values[g->input].name, vi->name);
        int id;
        enum tern_status st = define_value(im, vi->name, "input", &id);
        if (st) return st;
        tern_value *v = &g->values[id];
        const Onnx__TypeProto *tp = vi->type;
        if (!tp || !tp->tensor_type || !tp->tensor_type->shape)
            return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: input '%s' has no tensor shape", im->path, vi->name);
        if (tp->tensor_type->has_elem_type && tp->tensor_type->elem_type != 1)
            return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: input '%s' is not float32", im->path, vi->name);
        const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
        if (sh->n_dim < 1 || sh->n_dim > TERN_MAX_DIMS) return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: input '%s' has rank %zu", im->path, vi->name, sh->n_dim);
        v->ndim = (int)sh->n_dim;
        for (size_t d = 0; d < sh->n_dim; d++) {
            const Onnx__TensorShapeProto__Dimension *dm = sh->dim[d];
            int fixed = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            if (d == 0) v->dims[0] = 1; /* the batch, whatever the file says */
            else if (!fixed || dm->dim_value <= 0)
                return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: input '%s' dimension %zu is not a fixed size", im->path, vi->name, d);
            else v->dims[d] = dm->dim_value;
        }
        if (tern_value_numel_checked(v) < 0)
            return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: input '%s' has more than %lld elements per image (TERN_MAX_NUMEL)", im->path, vi->name, (long long)TERN_MAX_NUMEL);
        v->shape_known = 1;
        g->input = id;
    }
    if (g->input < 0) return tern_errorf(TERN_STATUS_FORMAT, "%s: the model has no (non-initializer) input", im->path);

    for (size_t i = 0; i < gr->n_node; i++) {
        const Onnx__NodeProto *nd = gr->node[i];
        if (!nd->op_type) return tern_errorf(TERN_STATUS_FORMAT, "%s: node %zu has no op_type", im->path, i);
        if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx") != 0)
            return NODE_ERR(TERN_STATUS_UNSUPPORTED, "operator domain '%s' is not supported", nd->domain);
        int op = tern_op_lookup(nd->op_type);
        if (op < 0) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "operator %s is not supported", nd->op_type);
        if (nd->n_output < 1) return NODE_ERR(TERN_STATUS_FORMAT, "no outputs");
        if (nd->n_input > TERN_MAX_NODE_IN) return NODE_ERR(TERN_STATUS_UNSUPPORTED, "%zu inputs, more than %d (TERN_MAX_NODE_IN)", nd->n_input, TERN_MAX_NODE_IN);
        if (op == TERN_OP_CONSTANT) {
            int id;
            enum tern_status st = define_value(im, nd->output[0], "the output of a Constant node", &id);
            if (st) return st;
            st = parse_attrs(im, nd, &(tern_node){.op = TERN_OP_CONSTANT});
            if (st) return st;
            st = import_constant(im, nd, id);
            if (st) return st;
            continue;
        }
        tern_node *n = tern_graph_add_node_n(g, nd->name && *nd->name ? nd->name : nd->output[0], (enum tern_op)op, (int)nd->n_input);
        if (!n) return tern_last_error()[0] ? TERN_STATUS_UNSUPPORTED : TERN_STATUS_NOMEM;
        n->nin = (int)nd->n_input;
        for (size_t j = 0; j < nd->n_input; j++) {
            if (!nd->input[j] || !*nd->input[j]) { n->in[j] = -1; continue; }
            n->in[j] = find_value(im, nd->input[j]);
            if (n->in[j] < 0) return NODE_ERR(TERN_STATUS_FORMAT, "input '%s' is not defined before use", nd->input[j]);
        }
        static const int min_in[TERN_OP_COUNT] = {[TERN_OP_CONV] = 2, [TERN_OP_GEMM] = 2, [TERN_OP_MATMUL] = 2,
            [TERN_OP_BATCHNORM] = 5, [TERN_OP_ADD] = 2, [TERN_OP_SUB] = 2, [TERN_OP_MUL] = 2, [TERN_OP_DIV] = 2,
            [TERN_OP_GATHER] = 2, [TERN_OP_RANGE] = 3, [TERN_OP_RESHAPE] = 2, [TERN_OP_PRELU] = 2};
        int need = min_in[op] ? min_in[op] : 1;
        for (int j = 0; j < need; j++)
            if (j >= n->nin || n->in[j] < 0) return NODE_ERR(TERN_STATUS_FORMAT, "needs %d inputs, has %d", need, n->nin);
        if (op == TERN_OP_SLICE && im->opset >= 10 && n->nin < 3) return NODE_ERR(TERN_STATUS_FORMAT, "needs starts and ends inputs");
        n->nout = nd->n_output > 2 ? 2 : (int)nd->n_output;
        for (int j = 0; j < n->nout; j++) {
            if (j > 0 && (!nd->output[j] || !*nd->output[j])) continue; /* an absent optional output */
            int id;
            enum tern_status st = define_value(im, nd->output[j], "a node output", &id);
            if (st) return st;
            n = &g->nodes[g->nnodes - 1];
            n->out[j] = id;
        }
        enum tern_status st = parse_attrs(im, nd, n);
        if (st) return st;
    }
    if (gr->n_output < 1) return tern_errorf(TERN_STATUS_FORMAT, "%s: the graph has no output", im->path);
    if (gr->n_output > 1) return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: the graph has %zu outputs; tern runs single-output classifiers", im->path, gr->n_output);
    g->output = find_value(im, gr->output[0]->name ? gr->output[0]->name : "");
    if (g->output < 0) return tern_errorf(TERN_STATUS_FORMAT, "%s: graph output '%s' is not produced by any node", im->path, gr->output[0]->name);
    return TERN_STATUS_OK;
}

static enum tern_status import_bytes(const uint8_t *buf, size_t len, const char *path, tern_graph **out) {
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m) return tern_errorf(TERN_STATUS_FORMAT, "%s: not a valid ONNX model (the protobuf does not parse: truncated or corrupt file?)", path);
    importer im = {.path = path, .g = tern_graph_new(path)};
    if (!im.g) {
        onnx__model_proto__free_unpacked(m, NULL);
        return TERN_STATUS_NOMEM;
    }
    enum tern_status st = read_meta(&im, m);
    if (!st) st = build(&im, m);
    free(im.slot);
    onnx__model_proto__free_unpacked(m, NULL);
    if (!st) st = tern_graph_infer_and_fold(im.g);
    if (!st) st = tern_graph_fold_batchnorm(im.g);
    if (!st) st = tern_graph_bn_to_conv(im.g);
    if (!st) st = tern_graph_prelu_to_leaky(im.g);
    if (!st) st = tern_graph_fuse_gelu(im.g);
    if (!st) st = tern_graph_remove_identity(im.g);
    if (!st) {
        tern_graph_prune(im.g);
        if (im.g->values[im.g->output].data) st = tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: the output does not depend on the input", path);
    }
    if (!st) st = tern_graph_check_finite(im.g);
    if (st) {
        if (!strstr(tern_last_error(), path)) tern_error_prefix(st, "%s", path);
        tern_graph_free(im.g);
        return st;
    }
    *out = im.g;
    return TERN_STATUS_OK;
}

enum tern_status tern_onnx_import(const char *path, tern_graph **out) {
    *out = NULL;
    uint8_t *buf;
    size_t len;
    enum tern_status st = tern_read_file(path, &buf, &len);
    if (st) return st;
    st = import_bytes(buf, len, path, out);
    free(buf);
    return st;
}

enum tern_status tern_onnx_import_mem(const uint8_t *data, size_t len, const char *name, tern_graph **out) {
    *out = NULL;
    return import_bytes(data, len, name ? name : "<memory>", out);
}
