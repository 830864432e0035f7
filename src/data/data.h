/* Datasets and images: what the evaluator and the calibrator read.
 * Every image reaches the engines as raw 8-bit pixels, planar CHW (c, h, w), RGB unless the
 * preprocessing asks for BGR. Normalisation (mean/std) is NOT applied here: it belongs to the
 * model's input spec (the FP32 path applies it, the quantizer folds it into the first conv). */
#ifndef TERN_DATA_H
#define TERN_DATA_H
#include "core/core.h"

/* How a decoded image becomes the network's input. */
typedef struct tern_preproc {
    int resize_short;   /* >0: resize so the shorter side is this (darknet bilinear, see image.c) */
    int crop_h, crop_w; /* >0: centre crop to this size (after resize) */
    int bgr;            /* 1: channel order B,G,R instead of R,G,B */
} tern_preproc;

/* A labelled set of images of one size. */
typedef struct tern_dataset tern_dataset;

/* Open a dataset:
 *  - a CIFAR-10 binary file (records of 1 label byte + 3072 pixel bytes, 32x32x3 planar);
 *  - a folder of images (JPEG/PNG/BMP...), sorted by file name; with `labels` (a file of one
 *    class id per line, e.g. WordNet ids) the label of `n01440764_tench.JPEG` is the line index
 *    of the file name's prefix before the first '_' (or '.'); without it labels are -1.
 * Images in a folder are decoded lazily by tern_dataset_read() with `pp`; all must end up the
 * same size (crop), else reading the odd one fails with a message naming the file. */
enum tern_status tern_dataset_open(const char *path, const char *labels, const tern_preproc *pp,
                                   tern_dataset **out);
int tern_dataset_count(const tern_dataset *ds);
/* Classes the labels can name (labels are 0 .. this - 1): 10 for CIFAR-10, the number of lines
 * of the label file for a folder, 0 for a folder without one. */
int tern_dataset_nclasses(const tern_dataset *ds);
/* Image size of every item (for a folder: from the preprocessing, or the first image). */
void tern_dataset_dims(const tern_dataset *ds, int *c, int *h, int *w);
/* Read item i: pixels into chw (c*h*w bytes), label into *label (may be NULL).
 * Safe to call from several threads at once on the same dataset (distinct chw buffers). */
enum tern_status tern_dataset_read(tern_dataset *ds, int i, uint8_t *chw, int *label);
/* Name of item i (file name, or "record i"). */
const char *tern_dataset_item_name(const tern_dataset *ds, int i, char *buf, size_t n);
void tern_dataset_free(tern_dataset *ds);

/* Images tern decodes: JPEG, PNG or BMP (by signature), at most TERN_IMAGE_MAX_SIDE pixels per
 * side and TERN_IMAGE_MAX_PIXELS in all, checked on the header before decoding (a 65535x65535
 * JPEG or a PNG "bomb" is refused without allocating its pixels). */
#define TERN_IMAGE_MAX_SIDE 32768
#define TERN_IMAGE_MAX_PIXELS (1 << 26)

/* Decode one image file and preprocess it. *chw is malloc'ed (c=3 always). */
enum tern_status tern_image_load(const char *path, const tern_preproc *pp, uint8_t **chw, int *h, int *w);
/* The same from the file's bytes; `what` names the image in messages. */
enum tern_status tern_image_decode(const uint8_t *file, size_t len, const char *what, const tern_preproc *pp,
                                   uint8_t **chw, int *h, int *w);

/* Size of an image file from its header, without decoding it. */
enum tern_status tern_image_size(const char *path, int *h, int *w);

/* The preprocessing steps on their own (tern_image_load and the datasets use them).
 * tern_preproc_dims: an h x w image becomes rh x rw after the resize and oh x ow after the crop
 * (any output pointer may be NULL); fails if the crop does not fit. `what` names the image in
 * error messages. pp may be NULL (no preprocessing). */
enum tern_status tern_preproc_dims(const tern_preproc *pp, const char *what, int h, int w,
                                   int *rh, int *rw, int *oh, int *ow);
/* Preprocess 3-channel 8-bit pixels, pixel (c, y, x) at in[c*cs + y*ys + x*xs] (so HWC and CHW
 * inputs both work), into out[3][oh][ow]; oh, ow must be what tern_preproc_dims gives. */
enum tern_status tern_preproc_apply(const tern_preproc *pp, const char *what, const uint8_t *in,
                                    int h, int w, size_t cs, size_t ys, size_t xs, uint8_t *out,
                                    int oh, int ow);

/* Read a text file of one name per line (class names, label ids). */
enum tern_status tern_lines_load(const char *path, char ***lines, int *n);
void tern_lines_free(char **lines, int n);

/* Deterministic PRNG (splitmix64) and CIFAR-style augmentation (src/data/augment.c): random crop
 * of a c x h x w 8-bit image padded by `pad` pixels (value 0) and a random horizontal flip;
 * writes the normalised float image (p/255 - mean)/std into out[c][h][w]. */
uint64_t tern_rng_next(uint64_t *s);
uint32_t tern_rng_below(uint64_t *s, uint32_t n);
void tern_augment(const uint8_t *chw, int c, int h, int w, int pad, int flip, uint64_t *rng, const float *mean,
                  const float *std, float *out);

#endif
