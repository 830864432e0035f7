/* tern: the command-line tool. One file per subcommand. */
#include "cli.h"
#include <string.h>

int cmd_finetune(int argc, char **argv); /* tools/cmd_finetune.c */

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} cmds[] = {
    {"info", cmd_info, "layers, shapes, parameters and MACs of a model"},
    {"run", cmd_run, "classify images (top-5 with class names)"},
    {"eval", cmd_eval, "top-1/top-5 accuracy and speed over a labelled dataset"},
    {"quantize", cmd_quantize, "convert an FP32 ONNX model to a ternary/8-bit .tern model"},
    {"finetune", cmd_finetune, "retrain at low precision (quantized weights, 8-bit activations) -> .tern"},
    {"sweep", cmd_sweep, "accuracy vs cluster size / weight type grid (Markdown, CSV, JSON, SVG; resumable)"},
    {"bench", cmd_bench, "per-layer time, latency (batch 1) and throughput (batch 64)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: tern <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\n'tern <command> --help' shows a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "tern: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
