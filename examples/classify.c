/* Classify one image with a quantized model: cc classify.c $(pkg-config --cflags --libs tern)
 * usage: classify MODEL.tern IMAGE [NAMES.txt]   prints the top-5 classes */
#include <tern.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s MODEL.tern IMAGE [NAMES]\n", argv[0]); return 2; }
    tern_model *m = NULL;
    tern_model_info in;
    uint8_t *rgb = NULL, *x = NULL;
    int32_t *logits = NULL;
    int h, w, top[5], rc = 1;
    if (tern_model_load(argv[1], NULL, &m) || tern_model_describe(m, &in) || tern_image_decode_file(argv[2], &rgb, &h, &w)) goto done;
    x = malloc(tern_model_input_size(m));
    logits = malloc(sizeof(int32_t) * in.classes);
    if (!x || !logits || tern_model_preprocess(m, rgb, h, w, 3, x) || tern_model_run(m, x, 1, logits)) goto done;
    char names[1000][64] = {{0}};
    FILE *f = argc > 3 ? fopen(argv[3], "r") : NULL;
    for (int i = 0; f && i < 1000 && fgets(names[i], sizeof names[i], f); i++) names[i][strcspn(names[i], "\r\n")] = 0;
    if (f) fclose(f);
    int k = in.classes < 5 ? in.classes : 5;
    tern_top_k(logits, in.classes, k, top);
    for (int i = 0; i < k; i++)
        printf("%2d. %5d  %-28s score %9.4f\n", i + 1, top[i], top[i] < 1000 ? names[top[i]] : "", tern_logit_value(m, logits[top[i]]));
    rc = 0;
done:
    if (rc) fprintf(stderr, "classify: %s\n", tern_last_error());
    tern_free(rgb);
    free(x);
    free(logits);
    tern_model_free(m);
    return rc;
}
