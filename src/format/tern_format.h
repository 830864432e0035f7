/* The .tern file layout (docs/FORMAT.md is the prose version) and the model limits the reader
 * and tern_qmodel_validate() enforce. Private to src/format and its tests: offsets are byte
 * offsets inside their record, every integer little-endian with the width given.
 * Changing anything here that a reader would notice bumps TERN_FILE_VERSION. */
#ifndef TERN_FORMAT_H
#define TERN_FORMAT_H
#include "format/qmodel.h"

#define TERN_FILE_MAGIC "TERN"
#define TERN_FILE_VERSION 1u
#define TERN_FILE_ALIGN 64          /* every section starts at a multiple of this */
#define TERN_BLOB_ALIGN 4           /* every array inside a layer blob starts at a multiple of this */
#define TERN_MAX_SECTIONS 64

/* File header: 64 bytes at offset 0. */
enum {
    TERN_HDR_MAGIC = 0,             /* 4 bytes "TERN" */
    TERN_HDR_VERSION = 4,           /* u32 */
    TERN_HDR_FLAGS = 8,             /* u32, no flags defined: 0 */
    TERN_HDR_NSECTIONS = 12,        /* u32, 1..TERN_MAX_SECTIONS */
    TERN_HDR_FILE_SIZE = 16,        /* u64, whole file */
    TERN_HDR_TABLE_OFFSET = 24,     /* u64, = TERN_HDR_SIZE */
    TERN_HDR_TABLE_CRC = 32,        /* u32, CRC-32 of the section table */
    /* 36..59 reserved, zero */
    TERN_HDR_CRC = 60,              /* u32, CRC-32 of bytes 0..59 */
    TERN_HDR_SIZE = 64
};

/* Section table entry: 32 bytes each, nsections of them right after the header. */
enum {
    TERN_SEC_TYPE = 0,              /* u32, enum tern_section */
    TERN_SEC_FLAGS = 4,             /* u32, TERN_SECF_* */
    TERN_SEC_OFFSET = 8,            /* u64, from the start of the file, multiple of 64 */
    TERN_SEC_LENGTH = 16,           /* u64, bytes of content (the padding after it is not counted) */
    TERN_SEC_CRC = 24,              /* u32, CRC-32 of the content */
    TERN_SEC_RESERVED = 28,         /* u32, zero */
    TERN_SEC_SIZE = 32
};
#define TERN_SECF_OPTIONAL 1u       /* a reader that does not know the type may skip it */

enum tern_section {                 /* append-only */
    TERN_SECTION_MODEL = 1,
    TERN_SECTION_TENSORS = 2,
    TERN_SECTION_LAYERS = 3,
    TERN_SECTION_BLOBS = 4
};

/* MODEL section: one 320-byte record. */
enum {
    TERN_MOD_IN_C = 0, TERN_MOD_IN_H = 4, TERN_MOD_IN_W = 8,         /* i32 */
    TERN_MOD_BGR = 12, TERN_MOD_RESIZE_SHORT = 16, TERN_MOD_CROP = 20, /* i32 */
    TERN_MOD_MEAN = 24,             /* 3 x f32 (IEEE-754 bits) */
    TERN_MOD_STD = 36,              /* 3 x f32 */
    TERN_MOD_NCLASSES = 48, TERN_MOD_NTENSORS = 52, TERN_MOD_NLAYERS = 56, TERN_MOD_OUTPUT = 60,
    TERN_MOD_SOURCE = 64,           /* 256 bytes, NUL-terminated, zero-padded */
    TERN_MOD_SIZE = 320
};

/* TENSORS section: ntensors 24-byte records. */
enum {
    TERN_TEN_C = 0, TERN_TEN_H = 4, TERN_TEN_W = 8, TERN_TEN_EXP = 12,  /* i32 */
    TERN_TEN_FLAGS = 16,            /* u32: bit 0 is_signed, bit 1 wide */
    TERN_TEN_RESERVED = 20,         /* u32, zero */
    TERN_TEN_SIZE = 24
};
#define TERN_TENF_SIGNED 1u
#define TERN_TENF_WIDE 2u

/* LAYERS section: nlayers 320-byte records. i32 unless said otherwise. */
enum {
    TERN_LAY_OP = 0,                /* u32, enum tern_qop */
    TERN_LAY_NIN = 4,               /* u32 */
    TERN_LAY_IN = 8,                /* 8 x i32; slots >= nin are zero */
    TERN_LAY_OUT = 40,
    TERN_LAY_LA = 44, TERN_LAY_LB = 48, TERN_LAY_RS = 52,
    TERN_LAY_KH = 56, TERN_LAY_KW = 60, TERN_LAY_SH = 64, TERN_LAY_SW = 68,
    TERN_LAY_PAD_T = 72, TERN_LAY_PAD_L = 76, TERN_LAY_PAD_B = 80, TERN_LAY_PAD_R = 84,
    TERN_LAY_QMIN = 88, TERN_LAY_QMAX = 92,
    TERN_LAY_NMULT = 96,
    TERN_LAY_PAD_C0 = 100, TERN_LAY_PAD_C1 = 104, TERN_LAY_PAD_H0 = 108,
    TERN_LAY_PAD_H1 = 112, TERN_LAY_PAD_W0 = 116, TERN_LAY_PAD_W1 = 120,
    TERN_LAY_START_C = 124, TERN_LAY_START_H = 128, TERN_LAY_START_W = 132,
    TERN_LAY_STEP_C = 136, TERN_LAY_STEP_H = 140, TERN_LAY_STEP_W = 144,
    TERN_LAY_SQNR = 148,            /* f32 */
    TERN_LAY_ZERO_FRAC = 152,       /* f32 */
    TERN_LAY_UNIFORM = 156,         /* u32: bit a set = array a stored as one element (TERN_ARR_*) */
    TERN_LAY_MACS = 160,            /* i64 */
    TERN_LAY_BLOB_OFFSET = 168,     /* u64, inside the BLOBS section, multiple of 4 */
    TERN_LAY_BLOB_LENGTH = 176,     /* u64 */
    TERN_LAY_NAME = 184,            /* 64 bytes, NUL-terminated, zero-padded */
    /* conv block: zero unless op == CONV */
    TERN_LAY_CONV = 248,
    TERN_CONV_CIN = 0, TERN_CONV_COUT = 4, TERN_CONV_GROUPS = 8,
    TERN_CONV_KH = 12, TERN_CONV_KW = 16, TERN_CONV_SH = 20, TERN_CONV_SW = 24,
    TERN_CONV_DH = 28, TERN_CONV_DW = 32,
    TERN_CONV_PAD_T = 36, TERN_CONV_PAD_L = 40, TERN_CONV_PAD_B = 44, TERN_CONV_PAD_R = 48,
    TERN_CONV_WTYPE = 52, TERN_CONV_CLUSTER = 56, TERN_CONV_QMIN = 60, TERN_CONV_QMAX = 64,
    TERN_CONV_FLAGS = 68,           /* u32: TERN_CONVF_* */
    TERN_CONV_SIZE = 72,
    TERN_LAY_SIZE = 320
};
#define TERN_CONVF_IN_SIGNED 1u
#define TERN_CONVF_OUT_WIDE 2u
#define TERN_CONVF_PAD_VALUE 4u

/* Arrays of a layer blob, in storage order (each starts 4-byte aligned, zero bytes between). */
enum tern_blob_array {
    TERN_ARR_W = 0,                 /* CONV codes, packed by wtype */
    TERN_ARR_CSCALE,                /* CONV i16 [cout][nclusters] */
    TERN_ARR_BIAS,                  /* CONV i32 [cout] */
    TERN_ARR_MPOS,                  /* CONV i32 [cout] */
    TERN_ARR_MNEG,                  /* CONV i32 [cout] */
    TERN_ARR_SHIFT,                 /* CONV i8 [cout] */
    TERN_ARR_PADV,                  /* CONV u8 [cin], only with TERN_CONVF_PAD_VALUE */
    TERN_ARR_MULT,                  /* AVGPOOL/GLOBALAVGPOOL i32 [nmult] */
    TERN_ARR_MSHIFT,                /* AVGPOOL/GLOBALAVGPOOL i8 [nmult] */
    TERN_ARR_LUT,                   /* LUT u8 [256] */
    TERN_ARR_PERM,                  /* CHANPERM i32 [c] */
    TERN_ARR_COUNT
};

/* Limits on a model (checked by tern_qmodel_validate, so by the reader and before saving).
 * They keep every size product well inside int32/int64 and reject absurd files early. */
#define TERN_QLIM_DIM 65536         /* each of c, h, w, in_c/h/w, crop, resize_short */
#define TERN_QLIM_ELEMS (1 << 28)   /* c*h*w of one tensor */
#define TERN_QLIM_TENSORS 65536
#define TERN_QLIM_LAYERS 65536
#define TERN_QLIM_WINDOW 1024       /* kernel, stride, dilation and conv pads */
#define TERN_QLIM_WEIGHTS (1 << 28) /* codes of one conv */
#define TERN_QLIM_GAP (1 << 23)     /* h*w of a global average pool (the int32 sum cannot overflow) */
#define TERN_QLIM_EXP 127           /* |tensor exponent| */

/* The shared structural check: with arrays = 0 the conv/pool arrays are not looked at (the
 * reader runs it before it knows how many bytes each array has). */
enum tern_status tern_qmodel_check(const tern_qmodel *m, const char *what, int arrays);

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32(0, p, n)). */
uint32_t tern_crc32(const uint8_t *p, size_t n);

#endif
