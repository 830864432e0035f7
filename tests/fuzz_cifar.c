/* libFuzzer target for the CIFAR-10 reader: the bytes become a file (an in-memory memfd) that
 * tern_dataset_open reads as a CIFAR-10 binary; every record is then read, plain and through a
 * resize/crop. Any file gives records or a clean error naming the file. */
#include "data/data.h"
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void read_all(const char *path, const tern_preproc *pp) {
    tern_dataset *ds = NULL;
    if (tern_dataset_open(path, NULL, pp, &ds) != TERN_STATUS_OK) {
        if (ds || !strstr(tern_last_error(), path)) __builtin_trap();
        return;
    }
    int c, h, w;
    tern_dataset_dims(ds, &c, &h, &w);
    uint8_t *px = malloc((size_t)3 * h * w);
    for (int i = 0; i < tern_dataset_count(ds) && px; i++) {
        int label = -2;
        if (tern_dataset_read(ds, i, px, &label) == TERN_STATUS_OK) {
            if (label < 0 || label > 9) __builtin_trap();
        } else if (!strstr(tern_last_error(), path)) {
            __builtin_trap();
        }
    }
    free(px);
    tern_dataset_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz_cifar", 0);
    if (fd < 0) return 0;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) break;
        done += (size_t)n;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    static const tern_preproc crop = {.resize_short = 36, .crop_h = 30, .crop_w = 28, .bgr = 1};
    read_all(path, NULL);
    read_all(path, &crop);
    close(fd);
    return 0;
}
