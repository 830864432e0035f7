/* The quantized model: what `tern quantize` produces, what a .tern file stores (src/format/
 * tern_file.c) and what the integer engine runs (src/engine/qexec.c). Everything the integer
 * pipeline needs is an integer here; the few floats (input normalisation, per-layer report
 * figures) are metadata for display and are never read by the engine.
 *
 * Tensors are 8-bit dynamic fixed point, stored NHWC per image: value = m * 2^-exp with m
 * uint8 (is_signed = 0) or int8 (is_signed = 1). The network input is tensor 0: raw pixels,
 * uint8, exp 0 (normalisation is folded into the first conv). The output tensor holds the
 * logits, as int32 when `wide` is set (so top-k never sees saturated ties).
 */
#ifndef TERN_QMODEL_H
#define TERN_QMODEL_H
#include "kernels/kernels.h"

#define TERN_MAX_QIN 8

enum tern_qop {                 /* append-only: stored in .tern files */
    TERN_QOP_CONV = 1,          /* conv or fully connected (tern_qconv), activation fused */
    TERN_QOP_ADD = 2,           /* y = sat(rshift(a << la + b << lb, rs)), ReLU via qmin */
    TERN_QOP_MAXPOOL = 3,
    TERN_QOP_AVGPOOL = 4,       /* windowed average, multiplier per window size */
    TERN_QOP_GLOBALAVGPOOL = 5,
    TERN_QOP_PAD = 6,           /* zero padding of channels and/or borders */
    TERN_QOP_SLICE = 7,         /* strided sub-tensor (channels, rows, columns) */
    TERN_QOP_CONCAT = 8,        /* along channels; inputs share the output's exponent */
    TERN_QOP_REQUANT = 9        /* change exponent: y = sat(rshift(x << la, rs)), la, rs >= 0 */
};

typedef struct tern_qtensor {
    int c, h, w;                /* per image; NHWC bytes */
    int is_signed;              /* int8 (else uint8) */
    int exp;                    /* value = m * 2^-exp */
    int wide;                   /* int32 elements (only the logits) */
} tern_qtensor;

typedef struct tern_qlayer {
    int op;                     /* enum tern_qop */
    char name[64];              /* source node name, for reports and errors */
    int nin, in[TERN_MAX_QIN], out;  /* tensor ids; see TERN_MAX_QIN */
    tern_qconv conv;            /* CONV: geometry, weights and requantisation (arrays owned) */
    /* ADD / REQUANT: left shifts of the inputs (>= 0) and rounding right shift of the sum */
    int la, lb, rs;
    /* pools: window, stride, pads; CONV/ADD/pools/REQUANT clamp: qmin..qmax */
    int kh, kw, sh, sw, pad_t, pad_l, pad_b, pad_r;
    int qmin, qmax;
    /* AVGPOOL/GLOBALAVGPOOL: y = tern_requant(sum, mult[n], mult[n], shift[n]) for a window of
     * n valid taps; arrays of kh*kw+1 entries (GLOBALAVGPOOL: index 1 holds the only entry). */
    int nmult;
    int32_t *mult;
    int8_t *mshift;
    /* PAD: begin/end in channels, rows, columns (value 0). SLICE: start/step per c, h, w. */
    int pad_c0, pad_c1, pad_h0, pad_h1, pad_w0, pad_w1;
    int start_c, start_h, start_w, step_c, step_h, step_w;
    /* report (metadata, float): weight SQNR in dB, fraction of zero codes, MACs per image */
    float sqnr_db, zero_frac;
    int64_t macs;
} tern_qlayer;

typedef struct tern_qmodel {
    int in_c, in_h, in_w;       /* input image, CHW uint8 pixels as the user feeds them */
    int bgr;                    /* channel order the model expects */
    int resize_short, crop;     /* preprocessing the model was calibrated with (0 = none) */
    float mean[3], std[3];      /* normalisation folded into the first conv (metadata) */
    int nclasses;
    int ntensors, nlayers;
    tern_qtensor *tensors;      /* [ntensors]; tensor 0 is the input */
    tern_qlayer *layers;        /* [nlayers] in execution order */
    int output;                 /* tensor id of the logits */
    char source[256];           /* file it was quantized from (metadata) */
} tern_qmodel;

/* Free a model and every array it owns (conv weight arrays, multipliers). NULL is a no-op. */
void tern_qmodel_free(tern_qmodel *m);

/* .tern files (src/format/tern_file.c). Writing goes to a temporary file renamed into place,
 * so a failed write never leaves a partial file. Reading validates everything. */
enum tern_status tern_qmodel_save(const tern_qmodel *m, const char *path);
enum tern_status tern_qmodel_load(const char *path, tern_qmodel **out);
/* Same as load, from memory (used by the fuzzer and tests). */
enum tern_status tern_qmodel_load_mem(const uint8_t *data, size_t len, const char *name, tern_qmodel **out);
/* Check a model's internal consistency (shapes, ids, ranges): used by load and by the
 * quantizer before saving. */
enum tern_status tern_qmodel_validate(const tern_qmodel *m, const char *what);

#endif
