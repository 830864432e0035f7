/* The FP32 graph IR: values (tensors) and nodes in topological order, as imported from ONNX.
 *
 * Activations are NCHW float32. Shapes are inferred for batch 1: dims[0] of every activation is
 * the batch, and executors scale it to the batch they run (tern assumes dim 0 is the batch, as
 * every CNN classifier does). Constants (initializers, folded shape subgraphs) carry data.
 */
#ifndef TERN_GRAPH_H
#define TERN_GRAPH_H
#include "core/core.h"

#define TERN_MAX_DIMS 8
/* Every node's in[] has at least TERN_MIN_IN slots (absent ones are -1), so ops may read their
 * optional inputs in[1..7] without checking nin; a node may have more inputs (Concat). */
#define TERN_MIN_IN 8

/* Limits of the graph IR, enforced at import with an error naming the limit. The shape
 * arithmetic stays far from int64 overflow because every factor is bounded first. */
#define TERN_MAX_NUMEL (INT64_C(1) << 30)     /* elements of one tensor (per image for activations) */
#define TERN_MAX_NODES 100000                 /* nodes in a graph (it is acyclic and topologically sorted, */
                                              /* so this also bounds its depth; no pass recurses) */
#define TERN_MAX_NODE_IN 65536                /* inputs of one node */
#define TERN_MAX_MACS (INT64_C(1) << 44)      /* multiply-accumulates of one node per image */
#define TERN_MAX_FOLD_NUMEL (INT64_C(1) << 24) /* elements a folded constant may have beyond its inputs' */

enum tern_dtype { TERN_DTYPE_F32 = 1, TERN_DTYPE_I64 = 7 };   /* ONNX TensorProto codes */

typedef struct tern_value {
    char *name;
    int dtype;                      /* enum tern_dtype */
    int ndim;
    int64_t dims[TERN_MAX_DIMS];    /* for activations dims[0] is the batch (1 here) */
    void *data;                     /* constant contents (float or int64), NULL for activations */
    int shape_known;                /* shape inferred */
} tern_value;

/* Operators. Append-only: .tern files do not store these, but keep the order stable anyway. */
enum tern_op {
    TERN_OP_CONV, TERN_OP_GEMM, TERN_OP_MATMUL, TERN_OP_BATCHNORM, TERN_OP_RELU, TERN_OP_LEAKYRELU,
    TERN_OP_CLIP, TERN_OP_ADD, TERN_OP_SUB, TERN_OP_MUL, TERN_OP_DIV, TERN_OP_MAXPOOL,
    TERN_OP_AVGPOOL, TERN_OP_GLOBALAVGPOOL, TERN_OP_FLATTEN, TERN_OP_RESHAPE, TERN_OP_SLICE,
    TERN_OP_PAD, TERN_OP_CONCAT, TERN_OP_SOFTMAX, TERN_OP_IDENTITY, TERN_OP_SHAPE, TERN_OP_GATHER,
    TERN_OP_UNSQUEEZE, TERN_OP_SQUEEZE, TERN_OP_CONSTANTOFSHAPE, TERN_OP_CAST, TERN_OP_TRANSPOSE,
    TERN_OP_RANGE, TERN_OP_CONSTANT, TERN_OP_SIGMOID,
    TERN_OP_HARDSIGMOID, TERN_OP_HARDSWISH, TERN_OP_TANH, TERN_OP_REDUCEMEAN, TERN_OP_PRELU,
    TERN_OP_ERF, TERN_OP_GELU,
    TERN_OP_COUNT
};

/* Attributes, already defaulted per the ONNX spec by the importer. */
typedef struct tern_attrs {
    int64_t kernel[2], strides[2], dilations[2];
    int64_t pads[4];                /* top, left, bottom, right (2-D ops) */
    int64_t group;
    int ceil_mode, count_include_pad;
    int auto_pad;                   /* 0 NOTSET, 1 VALID, 2 SAME_UPPER, 3 SAME_LOWER */
    int pad_mode;                   /* Pad: 0 constant (others are rejected at import) */
    float alpha, beta;              /* Gemm alpha/beta; LeakyRelu alpha */
    float epsilon;                  /* BatchNormalization */
    int trans_a, trans_b;
    int64_t axis;                   /* Flatten, Concat, Softmax, Gather */
    int64_t to;                     /* Cast */
    int64_t perm[TERN_MAX_DIMS];    /* Transpose (nperm entries; 0 = reverse) */
    int nperm;
    int64_t axes[TERN_MAX_DIMS];    /* Unsqueeze/Squeeze from attributes (opset < 13) */
    int naxes;
    float clip_min, clip_max;       /* Clip (opset < 11 attributes; inputs override) */
    float pad_value;                /* Pad constant */
    int64_t slice_starts[TERN_MAX_DIMS], slice_ends[TERN_MAX_DIMS]; /* Slice opset < 10 */
    int nslice;
    int64_t pad_list[2 * TERN_MAX_DIMS]; /* Pad opset < 11 */
    int npad_list;
    int64_t rs_start[TERN_MAX_DIMS], rs_step[TERN_MAX_DIMS]; /* Slice, resolved by inference */
    double fill;                    /* ConstantOfShape value */
    int fill_i64;
    int keepdims;                   /* ReduceMean (default 1) */
} tern_attrs;

typedef struct tern_node {
    char *name;
    enum tern_op op;
    int nin, nout;
    int *in;                        /* [max(nin, TERN_MIN_IN)] value ids; -1 for an absent optional input */
    int out[2];
    tern_attrs a;
} tern_node;

/* Preprocessing an ONNX model records in its metadata_props (keys tern.mean, tern.std: three
 * numbers "a,b,c" in the order the channels are fed; tern.bgr: 0/1; tern.resize, tern.crop:
 * pixels); has_* say which keys were present. */
typedef struct tern_graph_meta {
    int has_mean, has_std, has_bgr, has_resize, has_crop;
    float mean[3], std[3];
    int bgr, resize, crop;
} tern_graph_meta;

typedef struct tern_graph {
    char *path;                     /* source file, for messages */
    tern_graph_meta meta;           /* recorded preprocessing (zero if none) */
    int nvalues, cap_values;
    tern_value *values;
    int nnodes, cap_nodes;
    tern_node *nodes;               /* topological order */
    int input;                      /* value id of the image input [N, C, H, W] */
    int output;                     /* value id of the output (logits) */
} tern_graph;

/* The op table (src/graph/ops.c): one row per op. */
struct tern_fp32_ctx;
typedef struct tern_op_info {
    const char *name;                                       /* ONNX op_type */
    enum tern_status (*infer)(tern_graph *g, tern_node *n);  /* output shapes from input shapes */
    enum tern_status (*fold)(tern_graph *g, tern_node *n);   /* compute constant output, or NULL */
    void (*run_fp32)(struct tern_fp32_ctx *x, const tern_node *n); /* src/graph/fp32_ops.c */
} tern_op_info;
extern const tern_op_info tern_ops[TERN_OP_COUNT];
int tern_op_lookup(const char *onnx_name);                  /* -1 if unknown */
/* The element-wise function of a unary node (Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid,
 * HardSwish, Tanh, Identity) at v: the one definition that folding, the FP32 executor and the
 * quantizer's lookup tables share. */
float tern_unary_f32(const tern_node *n, float v);

/* Building and freeing. */
tern_graph *tern_graph_new(const char *path);
int tern_graph_add_value(tern_graph *g, const char *name);  /* -1 on OOM */
int tern_graph_find_value(const tern_graph *g, const char *name);
/* A node with room for nin inputs (at least TERN_MIN_IN, all -1); sets n->nin = 0. */
tern_node *tern_graph_add_node_n(tern_graph *g, const char *name, enum tern_op op, int nin);
tern_node *tern_graph_add_node(tern_graph *g, const char *name, enum tern_op op); /* TERN_MIN_IN slots */
/* Free what a node owns (when a pass drops it). */
void tern_node_clear(tern_node *n);
void tern_graph_free(tern_graph *g);

int64_t tern_value_numel(const tern_value *v);              /* product of dims */
int64_t tern_value_numel_per_image(const tern_value *v);    /* product of dims[1..] */
/* Product of dims, or -1 if it (or a dim) exceeds TERN_MAX_NUMEL or a dim is negative. */
int64_t tern_value_numel_checked(const tern_value *v);
/* Checked int64 arithmetic for shape computations: 0 and *r set, or 1 on overflow. */
static inline int tern_mul_ovf(int64_t a, int64_t b, int64_t *r) { return __builtin_mul_overflow(a, b, r); }
static inline int tern_add_ovf(int64_t a, int64_t b, int64_t *r) { return __builtin_add_overflow(a, b, r); }
int tern_dtype_size(int dtype);
const char *tern_value_shape_str(const tern_value *v, char *buf, size_t n);
/* Number of nodes reading value id v. */
int tern_graph_consumers(const tern_graph *g, int v);

/* Passes (src/graph/passes.c), run by the importer in this order. */
enum tern_status tern_graph_infer_and_fold(tern_graph *g);  /* shapes; fold constant subgraphs */
enum tern_status tern_graph_fold_batchnorm(tern_graph *g);  /* Conv+BN -> Conv */
enum tern_status tern_graph_bn_to_conv(tern_graph *g);     /* other 4-D BN -> 1x1 depthwise Conv */
enum tern_status tern_graph_prelu_to_leaky(tern_graph *g); /* PRelu of one slope -> LeakyRelu */
enum tern_status tern_graph_fuse_gelu(tern_graph *g);      /* x*0.5*(1+erf(x/sqrt 2)) -> Gelu */
enum tern_status tern_graph_remove_identity(tern_graph *g); /* Identity, Dropout */
void tern_graph_prune(tern_graph *g);                       /* drop nodes not reaching the output */
/* Every float constant a node reads (weights, biases, BN parameters, operands) is finite
 * (Clip's bounds may be +-inf): NaN/Inf would make NaN scales in the quantizer. */
enum tern_status tern_graph_check_finite(const tern_graph *g);

/* N-d helpers on raw elements of esize bytes (src/graph/nd.c), shared by folding and the FP32
 * executor. Shapes are int64 dims arrays of ndim entries. */
void tern_nd_slice(const void *x, const int64_t *xd, int ndim, int esize, const int64_t *start,
                   const int64_t *step, const int64_t *yd, void *y);
void tern_nd_transpose(const void *x, const int64_t *xd, int ndim, int esize, const int64_t *perm, void *y);
void tern_nd_pad(const void *x, const int64_t *xd, int ndim, int esize, const int64_t *begin,
                 const int64_t *yd, const void *fill, void *y);
/* Copy x (shape xd) into y (shape yd, same rank) at offset `at` along axis: one part of a Concat. */
void tern_nd_concat_part(const void *x, const int64_t *xd, int ndim, int esize, int axis, int64_t at,
                         const int64_t *yd, void *y);
/* y = concat of x[i] (shapes xd[i]) along axis. */
void tern_nd_concat(const void *const *x, const int64_t *const *xd, int nx, int ndim, int esize, int axis, void *y);
/* Broadcast strides: stride of each of y's ndim dims in x (0 where x broadcasts). */
void tern_nd_bcast_strides(const int64_t *xd, int xndim, const int64_t *yd, int yndim, int64_t *st);
/* Broadcast result shape of a and b; -1 if incompatible. */
int tern_nd_bcast_shape(const int64_t *ad, int an, const int64_t *bd, int bn, int64_t *yd);
/* Element-wise binary op with broadcasting: op is TERN_OP_ADD/SUB/MUL/DIV; dtype F32 or I64. */
void tern_nd_binary(int op, int dtype, const void *a, const int64_t *ad, int an, const void *b,
                    const int64_t *bd, int bn, const int64_t *yd, int yn, void *y);

/* MACs of a node (conv/gemm/matmul), for reports (<= TERN_MAX_MACS: inference checks it). */
int64_t tern_node_macs(const tern_graph *g, const tern_node *n);

/* The ONNX importer (src/onnx/import.c): parse, validate, fold, infer shapes. */
enum tern_status tern_onnx_import(const char *path, tern_graph **out);
/* The same from bytes in memory; name is used in messages (fuzzing, tests). */
enum tern_status tern_onnx_import_mem(const uint8_t *data, size_t len, const char *name, tern_graph **out);

#endif
