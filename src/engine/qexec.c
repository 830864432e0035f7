/* Integer engine. No floating point in this file (checked by tests/t_nofloat.sh). */
#include "engine/qexec.h"
#include <string.h>
#include <time.h>

struct tern_qexec {
    const tern_qmodel *m;
    int max_batch;
    tern_pool *pool;
    const tern_conv_kernel **kern;      /* [nlayers] for CONV layers */
    void **packed;                      /* [nlayers] */
    uint8_t **buf;                      /* [ntensors] -> slot memory; tensor 0 is the input */
    size_t *stride;                     /* [ntensors] bytes from one image to the next: the slot's
                                           largest tensor, so that images never overlap in a slot */
    uint8_t **slots;
    int nslots;
    void **scratch;                     /* [nthreads] */
    int32_t *logits;                    /* [max_batch][nclasses] */
    int profile;
    int64_t *layer_ns;
    tern_add_fn add;                    /* residual add kernel for the ISA */
    int *order;                         /* [nlayers] execution order (layer ids): the model's, except
                                           that a conv is moved to just before the ADD it is fused to */
    int *fuse_add;                      /* [nlayers] for a CONV: the ADD (its output's only reader) it
                                           runs in its epilogue (run_add), else -1; the conv's own
                                           output is then never stored */
    char *skip;                         /* [nlayers] 1: an ADD done by its conv */
    tern_max_fn max;                    /* running max (max pooling) */
    tern_chansum_fn chansum;            /* channel sums (global average pool) */
    int32_t **gap_sum;                  /* [nthreads] scratch: one int32 per channel */
    enum tern_isa isa;
};

static size_t elem_size(const tern_qtensor *t) { return t->wide ? 4 : 1; }
static size_t tensor_bytes(const tern_qtensor *t) { return (size_t)t->c * t->h * t->w * elem_size(t); }
static inline uint8_t *at(const tern_qexec *e, int t, int img) { return e->buf[t] + (size_t)img * e->stride[t]; }

/* Profile clock: with one thread everything runs on the caller, so its CPU time is the layer's
 * time without the time other jobs on a shared machine take from it; else wall time. */
static int64_t now_ns(const tern_qexec *e) {
    struct timespec ts;
    clock_gettime(tern_pool_size(e->pool) == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- simple integer ops, one image at a time ---- */

static inline int32_t load_elem(const tern_qtensor *t, const uint8_t *p, size_t i) {
    if (t->wide) { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    return t->is_signed ? (int32_t)(int8_t)p[i] : (int32_t)p[i];
}
static inline void store_elem(const tern_qtensor *t, uint8_t *p, size_t i, int32_t v) {
    if (t->wide) memcpy(p + 4 * i, &v, 4);
    else p[i] = (uint8_t)v;
}
static inline int32_t clamp32(int64_t v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : (int32_t)v; }
static inline int64_t rshift_round(int64_t v, int s) { return s > 0 ? (v + ((int64_t)1 << (s - 1))) >> s : v; }

/* Element-wise and pooling ops take output rows r0 .. r1-1 of one image (the layer-major path
 * splits a small batch's layers by rows over the threads); an element-wise op's rows are the
 * elements r0*W*C .. r1*W*C-1 of its NHWC tensors. */
static void op_add(const tern_qexec *e, const tern_qlayer *L, int img, int r0, int r1) {
    const tern_qtensor *ta = &e->m->tensors[L->in[0]], *tb = &e->m->tensors[L->in[1]], *ty = &e->m->tensors[L->out];
    const size_t row = (size_t)ty->c * ty->w, i0 = row * (size_t)r0, n = row * (size_t)(r1 - r0);
    const uint8_t *a = at(e, L->in[0], img) + i0 * elem_size(ta), *b = at(e, L->in[1], img) + i0 * elem_size(tb);
    uint8_t *y = at(e, L->out, img) + i0 * elem_size(ty);
    if (!ta->wide && !tb->wide && !ty->wide && L->la <= 23 && L->lb <= 23 && L->rs <= 30) {
        e->add(a, ta->is_signed, b, tb->is_signed, y, n, L->la, L->lb, L->rs, L->qmin, L->qmax);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t s = ((int64_t)load_elem(ta, a, i) << L->la) + ((int64_t)load_elem(tb, b, i) << L->lb);
        store_elem(ty, y, i, clamp32(rshift_round(s, L->rs), L->qmin, L->qmax));
    }
}

static void op_requant(const tern_qexec *e, const tern_qlayer *L, int img, int r0, int r1) {
    const tern_qtensor *tx = &e->m->tensors[L->in[0]], *ty = &e->m->tensors[L->out];
    const size_t row = (size_t)ty->c * ty->w, i0 = row * (size_t)r0, n = row * (size_t)(r1 - r0);
    const uint8_t *x = at(e, L->in[0], img) + i0 * elem_size(tx);
    uint8_t *y = at(e, L->out, img) + i0 * elem_size(ty);
    if (!tx->wide && !ty->wide) {   /* 8-bit to 8-bit: the same formula, once per byte value, then a table lookup */
        uint8_t lut[256];
        for (int v = 0; v < 256; v++) {
            const int64_t xv = tx->is_signed ? (int8_t)v : v;   /* load_elem of the byte v */
            lut[v] = (uint8_t)clamp32(rshift_round(xv * ((int64_t)1 << L->la), L->rs), L->qmin, L->qmax);
        }
        tern_lut_ref(x, n, lut, y);
        return;
    }
    for (size_t i = 0; i < n; i++)
        store_elem(ty, y, i, clamp32(rshift_round((int64_t)load_elem(tx, x, i) << L->la, L->rs), L->qmin, L->qmax));
}

static void op_pool(const tern_qexec *e, const tern_qlayer *L, int img, int tid, int r0, int r1) {
    const tern_qtensor *tx = &e->m->tensors[L->in[0]], *ty = &e->m->tensors[L->out];
    const uint8_t *x = at(e, L->in[0], img);
    uint8_t *y = at(e, L->out, img);
    int C = tx->c, H = tx->h, W = tx->w;
    if (L->op == TERN_QOP_MAXPOOL && !tx->wide && e->isa >= TERN_ISA_AVX2 && L->kh == 2 && L->kw == 2 && L->sh == 2 &&
        L->sw == 2 && !L->pad_t && !L->pad_l && C % 16 == 0 && 2 * ty->h <= H && 2 * ty->w <= W) {
        tern_maxpool2x2__avx2(x + (size_t)2 * r0 * W * C, W, C, y + (size_t)r0 * ty->w * C, r1 - r0, ty->w, tx->is_signed);
        return;
    }
    if (L->op == TERN_QOP_MAXPOOL && !tx->wide) { /* NHWC: a window is a max over channel vectors */
        for (int oy = r0; oy < r1; oy++)
            for (int ox = 0; ox < ty->w; ox++) {
                uint8_t *d = y + ((size_t)oy * ty->w + ox) * C;
                int first = 1;
                for (int ky = 0; ky < L->kh; ky++) {
                    int iy = oy * L->sh - L->pad_t + ky;
                    if (iy < 0 || iy >= H) continue;
                    for (int kx = 0; kx < L->kw; kx++) {
                        int ix = ox * L->sw - L->pad_l + kx;
                        if (ix < 0 || ix >= W) continue;
                        const uint8_t *s = x + ((size_t)iy * W + ix) * C;
                        if (first) memcpy(d, s, (size_t)C);
                        else e->max(d, s, (size_t)C, tx->is_signed);
                        first = 0;
                    }
                }
                if (first) memset(d, 0, (size_t)C);
            }
        return;
    }
    if (L->op == TERN_QOP_GLOBALAVGPOOL) { /* its input is 8-bit: only the logits are wide, and no layer reads them;
                                            * one output row: the first part does it */
        if (r0 > 0) return;
        int32_t *sum = e->gap_sum[tid];
        e->chansum(x, tx->is_signed, (size_t)H * W, C, sum);
        for (int c = 0; c < C; c++) store_elem(ty, y, (size_t)c, tern_requant(sum[c], L->mult[1], L->mult[1], L->mshift[1], L->qmin, L->qmax));
        return;
    }
    for (int oy = r0; oy < r1; oy++)
        for (int ox = 0; ox < ty->w; ox++)
            for (int c = 0; c < C; c++) {
                int32_t best = INT32_MIN, n = 0;
                int64_t s = 0;
                for (int ky = 0; ky < L->kh; ky++) {
                    int iy = oy * L->sh - L->pad_t + ky;
                    if (iy < 0 || iy >= H) continue;
                    for (int kx = 0; kx < L->kw; kx++) {
                        int ix = ox * L->sw - L->pad_l + kx;
                        if (ix < 0 || ix >= W) continue;
                        int32_t v = load_elem(tx, x, ((size_t)iy * W + ix) * C + c);
                        best = v > best ? v : best;
                        s += v;
                        n++;
                    }
                }
                size_t o = ((size_t)oy * ty->w + ox) * C + c;
                if (L->op == TERN_QOP_MAXPOOL) store_elem(ty, y, o, n ? best : 0);
                else store_elem(ty, y, o, n ? tern_requant((int32_t)s, L->mult[n], L->mult[n], L->mshift[n], L->qmin, L->qmax) : 0);
            }
}

/* One pixel's channels: the usual sizes as fixed-size copies (inlined, no library call). */
static inline void copy_px(uint8_t *d, const uint8_t *s, size_t n) {
    switch (n) {
    case 16: memcpy(d, s, 16); break;
    case 32: memcpy(d, s, 32); break;
    case 64: memcpy(d, s, 64); break;
    default: memcpy(d, s, n); break;
    }
}

static void op_pad(const tern_qexec *e, const tern_qlayer *L, int img) {
    const tern_qtensor *tx = &e->m->tensors[L->in[0]], *ty = &e->m->tensors[L->out];
    const uint8_t *x = at(e, L->in[0], img);
    uint8_t *y = at(e, L->out, img);
    size_t es = elem_size(ty);
    memset(y, 0, tensor_bytes(ty));
    for (int iy = 0; iy < tx->h; iy++)
        for (int ix = 0; ix < tx->w; ix++)
            copy_px(y + (((size_t)(iy + L->pad_h0) * ty->w + ix + L->pad_w0) * ty->c + L->pad_c0) * es,
                    x + ((size_t)iy * tx->w + ix) * tx->c * es, (size_t)tx->c * es);
}

static void op_slice(const tern_qexec *e, const tern_qlayer *L, int img) {
    const tern_qtensor *tx = &e->m->tensors[L->in[0]], *ty = &e->m->tensors[L->out];
    const uint8_t *x = at(e, L->in[0], img);
    uint8_t *y = at(e, L->out, img);
    size_t es = elem_size(ty);
    if (L->step_w == 1 && L->step_c == 1 && L->start_c == 0 && ty->c == tx->c) {   /* whole rows */
        for (int oy = 0; oy < ty->h; oy++)
            memcpy(y + (size_t)oy * ty->w * ty->c * es,
                   x + ((size_t)(L->start_h + oy * L->step_h) * tx->w + L->start_w) * tx->c * es, (size_t)ty->w * ty->c * es);
        return;
    }
    for (int oy = 0; oy < ty->h; oy++)
        for (int ox = 0; ox < ty->w; ox++) {
            const uint8_t *src = x + ((size_t)(L->start_h + oy * L->step_h) * tx->w + L->start_w + ox * L->step_w) * tx->c * es;
            uint8_t *dst = y + ((size_t)oy * ty->w + ox) * ty->c * es;
            if (L->step_c == 1) copy_px(dst, src + (size_t)L->start_c * es, (size_t)ty->c * es);
            else
                for (int c = 0; c < ty->c; c++) memcpy(dst + c * es, src + (size_t)(L->start_c + c * L->step_c) * es, es);
        }
}

static void op_concat(const tern_qexec *e, const tern_qlayer *L, int img, int r0, int r1) {
    const tern_qtensor *ty = &e->m->tensors[L->out];
    uint8_t *y = at(e, L->out, img);
    size_t es = elem_size(ty), off = 0;
    for (int i = 0; i < L->nin; i++) {
        const tern_qtensor *tx = &e->m->tensors[L->in[i]];
        const uint8_t *x = at(e, L->in[i], img);
        for (size_t p = (size_t)r0 * ty->w; p < (size_t)r1 * ty->w; p++)
            memcpy(y + (p * ty->c + off) * es, x + p * tx->c * es, (size_t)tx->c * es);
        off += (size_t)tx->c;
    }
}

/* LUT and MUL: the reference kernels at every ISA level (8-bit in and out; validated shapes). */
static void op_lut(const tern_qexec *e, const tern_qlayer *L, int img, int r0, int r1) {
    const tern_qtensor *ty = &e->m->tensors[L->out];
    const size_t row = (size_t)ty->c * ty->w;   /* 8-bit in and out */
    tern_lut_ref(at(e, L->in[0], img) + row * (size_t)r0, row * (size_t)(r1 - r0), L->lut, at(e, L->out, img) + row * (size_t)r0);
}

static void op_mul(const tern_qexec *e, const tern_qlayer *L, int img) {
    const tern_qtensor *ta = &e->m->tensors[L->in[0]], *tb = &e->m->tensors[L->in[1]], *ty = &e->m->tensors[L->out];
    tern_mul_ref(at(e, L->in[0], img), ta->is_signed,
                 at(e, L->in[1], img), tb->is_signed, tb->h * tb->w == 1 && ty->h * ty->w > 1,
                 at(e, L->out, img), (size_t)ty->h * ty->w, ty->c, L->la, L->rs, L->qmin, L->qmax);
}

static void op_chanperm(const tern_qexec *e, const tern_qlayer *L, int img) {
    const tern_qtensor *ty = &e->m->tensors[L->out];
    tern_chanperm_ref(at(e, L->in[0], img), (size_t)ty->h * ty->w, ty->c, L->perm,
                      at(e, L->out, img));
}

/* ---- dispatch ---- */

typedef struct {
    tern_qexec *e;
    const tern_qlayer *L;
    int li, chunks;
} job;

/* rows [*r0, *r1) of h: part `part` of `chunks` */
static void part_rows(int h, int part, int chunks, int *r0, int *r1) {
    *r0 = (int)((int64_t)h * part / chunks);
    *r1 = (int)((int64_t)h * (part + 1) / chunks);
}

static void run_item(void *arg, int item, int tid) {
    job *j = arg;
    tern_qexec *e = j->e;
    const tern_qlayer *L = j->L;
    const int img = item / j->chunks;
    int r0, r1;
    part_rows(e->m->tensors[L->out].h, item % j->chunks, j->chunks, &r0, &r1);
    if (r0 >= r1) return;
    if (L->op == TERN_QOP_CONV) {
        const tern_qtensor *tx = &e->m->tensors[L->in[0]];
        void *scratch = e->scratch[tid];
        const uint8_t *x = at(e, L->in[0], img);
        if (e->fuse_add[j->li] >= 0) {
            /* conv + add: the add's output gets the rows; see fusable() */
            const tern_qlayer *A = &e->m->layers[e->fuse_add[j->li]];
            const int ci = A->in[0] == L->out ? 0 : 1;
            const int ri = A->in[1 - ci];
            const tern_qtensor *tr = &e->m->tensors[ri];
            const tern_qadd a = {at(e, ri, img), tr->is_signed, ci == 0 ? A->la : A->lb,
                                 ci == 0 ? A->lb : A->la, A->rs, A->qmin, A->qmax};
            e->kern[j->li]->run_add(&L->conv, e->packed[j->li], x, tx->h, tx->w, at(e, A->out, img),
                                    r0, r1, scratch, &a);
            return;
        }
        e->kern[j->li]->run(&L->conv, e->packed[j->li], x, tx->h, tx->w, at(e, L->out, img), r0,
                            r1, scratch);
        return;
    }
    switch (L->op) {   /* the ops split by rows (row_split); the others run whole in part 0 (chunks 1) */
    case TERN_QOP_ADD: op_add(e, L, img, r0, r1); break;
    case TERN_QOP_MAXPOOL: case TERN_QOP_AVGPOOL: case TERN_QOP_GLOBALAVGPOOL: op_pool(e, L, img, tid, r0, r1); break;
    case TERN_QOP_PAD: op_pad(e, L, img); break;
    case TERN_QOP_SLICE: op_slice(e, L, img); break;
    case TERN_QOP_CONCAT: op_concat(e, L, img, r0, r1); break;
    case TERN_QOP_REQUANT: op_requant(e, L, img, r0, r1); break;
    case TERN_QOP_LUT: op_lut(e, L, img, r0, r1); break;
    case TERN_QOP_MUL: op_mul(e, L, img); break;
    case TERN_QOP_CHANPERM: op_chanperm(e, L, img); break;
    default: break;
    }
}

/* Can CONV layer i run ADD layer a in its epilogue? The add must read the conv's output, which
 * nothing else reads (it is never stored), and the other input, same shape, must be 8-bit like
 * the sum; shifts within what the add kernels take. */
static int fusable(const tern_qexec *e, int i, int a) {
    const tern_qmodel *m = e->m;
    const tern_qlayer *L = &m->layers[i], *A = &m->layers[a];
    if (L->op != TERN_QOP_CONV || A->op != TERN_QOP_ADD || A->nin != 2 || !e->kern[i]->run_add) return 0;
    const int t = L->out;
    if ((A->in[0] == t) == (A->in[1] == t) || t == m->output) return 0;
    for (int k = 0; k < m->nlayers; k++)
        for (int q = 0; q < m->layers[k].nin; q++)
            if (m->layers[k].in[q] == t && k != a) return 0;
    const tern_qtensor *ty = &m->tensors[t], *tr = &m->tensors[A->in[A->in[0] == t ? 1 : 0]], *tz = &m->tensors[A->out];
    if (ty->wide || tr->wide || tz->wide || L->conv.out_wide) return 0;
    if (ty->is_signed != (L->conv.qmin < 0) || tz->is_signed != (A->qmin < 0)) return 0;   /* run_add reads types off the clamps */
    if (tr->c != ty->c || tr->h != ty->h || tr->w != ty->w || tz->c != ty->c || tz->h != ty->h || tz->w != ty->w) return 0;
    return A->la >= 0 && A->lb >= 0 && A->la <= 23 && A->lb <= 23 && A->rs >= 0 && A->rs <= 30;
}

/* Fusion: each ADD takes a conv producing one of its inputs if fusable; that conv is moved to
 * just before the add in the execution order (its output has no other reader, tensors are
 * written once, so the layers in between neither see nor change anything it reads). */
static void plan_fusion(tern_qexec *e) {
    const tern_qmodel *m = e->m;
    for (int k = 0; k < m->nlayers; k++) e->order[k] = k, e->fuse_add[k] = -1, e->skip[k] = 0;
    for (int k = 0; k < m->nlayers; k++) {
        const int a = e->order[k];
        if (m->layers[a].op != TERN_QOP_ADD || m->layers[a].nin != 2) continue;
        for (int q = 0; q < 2; q++) {
            int pk = -1;   /* position of the producer of input q */
            for (int j = 0; j < k; j++)
                if (m->layers[e->order[j]].out == m->layers[a].in[q]) pk = j;
            if (pk < 0 || !fusable(e, e->order[pk], a)) continue;
            const int ci = e->order[pk];
            for (int j = pk; j < k - 1; j++) e->order[j] = e->order[j + 1];
            e->order[k - 1] = ci;
            e->fuse_add[ci] = a;
            e->skip[a] = 1;
            break;
        }
    }
}

/* Plan tensor memory: a tensor gets a slot when produced and returns it after its last reader
 * (in execution order). A fused conv + add produces the add's output at the conv (its own
 * output gets no memory). */
static enum tern_status plan(tern_qexec *e) {
    const tern_qmodel *m = e->m;
    int *last = tern_malloc(sizeof(int) * (size_t)m->ntensors), *slot_of = tern_malloc(sizeof(int) * (size_t)m->ntensors);
    size_t *slot_size = tern_calloc((size_t)m->ntensors + 1, sizeof(size_t));
    char *slot_busy = tern_calloc((size_t)m->ntensors + 1, 1);
    enum tern_status st = TERN_STATUS_OK;
    if (!last || !slot_of || !slot_size || !slot_busy) { st = TERN_STATUS_NOMEM; goto done; }
    for (int t = 0; t < m->ntensors; t++) last[t] = -1, slot_of[t] = -1;
    for (int k = 0; k < m->nlayers; k++)
        for (int q = 0; q < m->layers[e->order[k]].nin; q++) last[m->layers[e->order[k]].in[q]] = k;
    last[m->output] = m->nlayers;
    int nslots = 0;
    for (int k = -1; k < m->nlayers; k++) {
        const int i = k < 0 ? -1 : e->order[k];
        int t = i < 0 ? 0 : m->layers[i].out;
        if (i >= 0 && e->fuse_add[i] >= 0) t = m->layers[e->fuse_add[i]].out;
        if (i < 0 || !e->skip[i]) {   /* (a fused add's output exists already) */
            size_t need = (tensor_bytes(&m->tensors[t]) + 63) / 64 * 64;   /* per image */
            int best = -1;
            for (int s = 0; s < nslots; s++)
                if (!slot_busy[s] && (best < 0 || (slot_size[s] >= need) > (slot_size[best] >= need) ||
                                      ((slot_size[s] >= need) == (slot_size[best] >= need) && slot_size[s] < slot_size[best])))
                    best = s;
            if (best < 0) best = nslots++;
            if (slot_size[best] < need) slot_size[best] = need;
            slot_busy[best] = 1;
            slot_of[t] = best;
            if (last[t] < 0 && t != m->output) slot_busy[best] = 0; /* never read */
        }
        if (i >= 0) /* release inputs read for the last time here */
            for (int q = 0; q < m->layers[i].nin; q++) {
                int u = m->layers[i].in[q];
                if (last[u] == k && slot_of[u] >= 0 && u != t) slot_busy[slot_of[u]] = 0;
            }
    }
    e->slots = tern_calloc((size_t)nslots + 1, sizeof *e->slots);
    if (!e->slots) { st = TERN_STATUS_NOMEM; goto done; }
    e->nslots = nslots;
    for (int s = 0; s < nslots; s++)
        if (!(e->slots[s] = tern_aligned_alloc(slot_size[s] * (size_t)e->max_batch + 64))) { st = TERN_STATUS_NOMEM; goto done; }
    for (int t = 0; t < m->ntensors; t++) {
        e->buf[t] = slot_of[t] >= 0 ? e->slots[slot_of[t]] : NULL;
        e->stride[t] = slot_of[t] >= 0 ? slot_size[slot_of[t]] : 0;
    }
done:
    free(last);
    free(slot_of);
    free(slot_size);
    free(slot_busy);
    return st;
}

enum tern_status tern_qexec_new(const tern_qmodel *m, int max_batch, int nthreads, enum tern_isa isa, tern_qexec **out) {
    *out = NULL;
    if (max_batch < 1) return tern_errorf(TERN_STATUS_INVALID_ARG, "max_batch must be >= 1");
    tern_qexec *e = tern_calloc(1, sizeof *e);
    if (!e) return TERN_STATUS_NOMEM;
    e->m = m;
    e->max_batch = max_batch;
    e->add = tern_add_select(isa);
    e->max = tern_max_select(isa);
    e->chansum = tern_chansum_select(isa);
    e->isa = isa;
    enum tern_status st = TERN_STATUS_NOMEM;
    e->pool = tern_pool_create(nthreads);
    e->kern = tern_calloc((size_t)m->nlayers + 1, sizeof *e->kern);
    e->packed = tern_calloc((size_t)m->nlayers + 1, sizeof *e->packed);
    e->buf = tern_calloc((size_t)m->ntensors, sizeof *e->buf);
    e->stride = tern_calloc((size_t)m->ntensors, sizeof *e->stride);
    e->layer_ns = tern_calloc((size_t)m->nlayers + 1, sizeof *e->layer_ns);
    e->order = tern_calloc((size_t)m->nlayers + 1, sizeof *e->order);
    e->fuse_add = tern_calloc((size_t)m->nlayers + 1, sizeof *e->fuse_add);
    e->skip = tern_calloc((size_t)m->nlayers + 1, 1);
    e->logits = tern_malloc(sizeof(int32_t) * (size_t)max_batch * (size_t)m->nclasses);
    if (!e->pool || !e->kern || !e->packed || !e->buf || !e->stride || !e->layer_ns || !e->order || !e->fuse_add || !e->skip || !e->logits) goto fail;
    size_t scratch = 64;
    for (int i = 0; i < m->nlayers; i++) {
        const tern_qlayer *L = &m->layers[i];
        if (L->op != TERN_QOP_CONV) continue;
        e->kern[i] = tern_conv_kernel_select(&L->conv, isa);
        size_t ps = e->kern[i]->packed_size(&L->conv);
        if (!(e->packed[i] = tern_aligned_alloc(ps + 64))) goto fail;
        if ((st = e->kern[i]->pack(&L->conv, e->packed[i])) != TERN_STATUS_OK) {
            tern_error_prefix(st, "layer %d (%s)", i, L->name);
            goto fail;
        }
        size_t s = e->kern[i]->scratch_size(&L->conv, m->tensors[L->in[0]].w);
        if (s > scratch) scratch = s;
    }
    plan_fusion(e);
    int nt = tern_pool_size(e->pool), maxc = 1;
    for (int t = 0; t < m->ntensors; t++) maxc = m->tensors[t].c > maxc ? m->tensors[t].c : maxc;
    if (!(e->scratch = tern_calloc((size_t)nt, sizeof *e->scratch)) || !(e->gap_sum = tern_calloc((size_t)nt, sizeof *e->gap_sum))) goto fail;
    for (int t = 0; t < nt; t++)
        if (!(e->scratch[t] = tern_aligned_alloc(scratch)) || !(e->gap_sum[t] = tern_malloc(sizeof(int32_t) * (size_t)maxc))) goto fail;
    if ((st = plan(e)) != TERN_STATUS_OK) goto fail;
    *out = e;
    return TERN_STATUS_OK;
fail:
    tern_qexec_free(e);
    return st;
}

void tern_qexec_free(tern_qexec *e) {
    if (!e) return;
    if (e->packed)
        for (int i = 0; i < e->m->nlayers; i++) free(e->packed[i]);
    if (e->scratch)
        for (int t = 0; t < tern_pool_size(e->pool); t++) free(e->scratch[t]);
    if (e->gap_sum)
        for (int t = 0; t < tern_pool_size(e->pool); t++) free(e->gap_sum[t]);
    free(e->gap_sum);
    if (e->slots)
        for (int s = 0; s < e->nslots; s++) free(e->slots[s]);
    tern_pool_free(e->pool);
    free(e->slots);
    free(e->scratch);
    free(e->kern);
    free(e->packed);
    free(e->buf);
    free(e->stride);
    free(e->layer_ns);
    free(e->order);
    free(e->fuse_add);
    free(e->skip);
    free(e->logits);
    free(e);
}

void tern_qexec_profile(tern_qexec *e, int on) { e->profile = on; }
const uint8_t *tern_qexec_tensor(const tern_qexec *e, int t, int img) { return e->buf[t] ? at(e, t, img) : NULL; }

enum tern_status tern_qexec_keep_all(tern_qexec *e) {
    const tern_qmodel *m = e->m;
    uint8_t **slots = tern_calloc((size_t)m->ntensors, sizeof *slots);
    if (!slots) return TERN_STATUS_NOMEM;
    for (int t = 0; t < m->ntensors; t++)
        if (!(slots[t] = tern_aligned_alloc(tensor_bytes(&m->tensors[t]) * (size_t)e->max_batch + 64))) {
            for (int k = 0; k < t; k++) free(slots[k]);
            free(slots);
            return TERN_STATUS_NOMEM;
        }
    for (int s = 0; s < e->nslots; s++) free(e->slots[s]);
    free(e->slots);
    e->slots = slots;
    for (int i = 0; i < m->nlayers; i++) e->fuse_add[i] = -1, e->skip[i] = 0;   /* every tensor is stored: run each layer itself */
    e->nslots = m->ntensors;
    for (int t = 0; t < m->ntensors; t++) e->buf[t] = slots[t], e->stride[t] = tensor_bytes(&m->tensors[t]);
    return TERN_STATUS_OK;
}
const int64_t *tern_qexec_layer_ns(const tern_qexec *e) { return e->layer_ns; }
const char *tern_qexec_kernel_name(const tern_qexec *e, int i) { return e->kern[i] ? e->kern[i]->name : NULL; }

/* image b of the input, rows y0 .. y1-1: CHW pixels -> NHWC tensor 0 */
static void load_input(tern_qexec *e, const uint8_t *px, int b, int y0, int y1) {
    const tern_qtensor *t0 = &e->m->tensors[0];
    const size_t plane = (size_t)t0->h * t0->w, per = plane * t0->c;
    const uint8_t *s = px + (size_t)b * per;
    uint8_t *d = at(e, 0, b);
    for (size_t p = (size_t)y0 * t0->w; p < (size_t)y1 * t0->w; p++)
        for (int c = 0; c < t0->c; c++) d[p * t0->c + c] = s[(size_t)c * plane + p];
}

typedef struct { tern_qexec *e; const uint8_t *px; int chunks; } image_job;

static void load_input_item(void *arg, int item, int tid) {
    const image_job *ij = arg;
    int y0, y1;
    part_rows(ij->e->m->tensors[0].h, item % ij->chunks, ij->chunks, &y0, &y1);
    load_input(ij->e, ij->px, item / ij->chunks, y0, y1);
}

/* Split by output rows in the layer-major path: convs, and, with more than one thread, the
 * element-wise and pooling ops that take a row range when their output is large enough to pay for
 * waking the other threads (ROW_SPLIT_BYTES per image: a ResNet-56 add of 16 KB is not, and
 * splitting it made batch-1 latency at 2 threads worse; SqueezeNet's concats and pools are). */
enum { ROW_SPLIT_BYTES = 64 * 1024 };
static int row_split(const tern_qexec *e, const tern_qlayer *L, int nt) {
    if (L->op == TERN_QOP_CONV) return 1;
    return nt > 1 && tensor_bytes(&e->m->tensors[L->out]) >= ROW_SPLIT_BYTES &&
           (L->op == TERN_QOP_ADD || L->op == TERN_QOP_MAXPOOL || L->op == TERN_QOP_AVGPOOL || L->op == TERN_QOP_CONCAT ||
            L->op == TERN_QOP_REQUANT || L->op == TERN_QOP_LUT);
}

/* One image (item = image) through every layer, its input converted first: the image-major path
 * for batches that split evenly enough over the threads. With one thread the profile clock
 * times each layer as in the layer-major loop. */
static void run_image(void *arg, int img, int tid) {
    tern_qexec *e = ((image_job *)arg)->e;
    const tern_qmodel *m = e->m;
    load_input(e, ((image_job *)arg)->px, img, 0, m->tensors[0].h);
    for (int k = 0; k < m->nlayers; k++) {
        const int i = e->order[k];
        if (e->skip[i]) continue;
        job j = {e, &m->layers[i], i, 1};
        int64_t t1 = e->profile ? now_ns(e) : 0;
        run_item(&j, img, tid);
        if (e->profile) e->layer_ns[i] += now_ns(e) - t1;
    }
}

enum tern_status tern_qexec_run(tern_qexec *e, const uint8_t *px, int batch, const int32_t **logits) {
    const tern_qmodel *m = e->m;
    if (batch < 1 || batch > e->max_batch)
        return tern_errorf(TERN_STATUS_INVALID_ARG, "batch %d outside 1..%d planned for this engine", batch, e->max_batch);
    int nt = tern_pool_size(e->pool);
    if (batch >= 4 * nt && !(e->profile && nt > 1)) {
        /* image-major: each thread takes an image and runs the whole network on it: no barrier
         * per layer, and an image's tensors stay in the core's cache from layer to layer */
        image_job ij = {e, px, 1};
        tern_pool_run(e->pool, run_image, &ij, batch);
        goto logits;
    }
    image_job ij = {e, px, nt > 1 && tensor_bytes(&m->tensors[0]) >= ROW_SPLIT_BYTES ? TERN_MIN(nt, m->tensors[0].h) : 1};
    tern_pool_run(e->pool, load_input_item, &ij, batch * ij.chunks);
    for (int k = 0; k < m->nlayers; k++) {
        const int i = e->order[k];
        const tern_qlayer *L = &m->layers[i];
        if (e->skip[i]) continue;   /* done by its conv */
        job j = {e, L, i, 1};
        if (row_split(e, L, nt) && batch < 4 * nt) {
            int oh = m->tensors[L->out].h;
            j.chunks = 4 * nt < oh ? 4 * nt : oh;
        }
        int64_t t1 = e->profile ? now_ns(e) : 0;
        tern_pool_run(e->pool, run_item, &j, batch * j.chunks);
        if (e->profile) e->layer_ns[i] += now_ns(e) - t1;
    }
logits:;
    const tern_qtensor *ty = &m->tensors[m->output];
    size_t per_out = (size_t)ty->c * ty->h * ty->w;
    for (int b = 0; b < batch; b++)
        for (size_t k = 0; k < per_out && k < (size_t)m->nclasses; k++)
            e->logits[(size_t)b * m->nclasses + k] = load_elem(ty, at(e, m->output, b), k);
    *logits = e->logits;
    return TERN_STATUS_OK;
}
