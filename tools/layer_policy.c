/* Per-layer policy files for tern quantize (--layers FILE, --write-layers FILE).
 *
 * One rule a line: KEY=SPEC, KEY a weight layer's name or its index in the report table, SPEC as
 * --weights (t, t:N, t:all, 4, 4:N, 8). '#' starts a comment; blank lines are skipped; spaces around
 * KEY and SPEC are ignored. The rules apply in file order after the built-in ones (first conv and last
 * layer 8-bit), exactly like --layer. The file written lists every weight layer by name with its
 * resolved precision, so quantizing with it again gives the same model. */
#include "layer_policy.h"
#include <ctype.h>
#include <errno.h>
#include <string.h>

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

int cli_layers_read(const char *path, tern_qopts *q) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "tern quantize: --layers %s: %s\n", path, strerror(errno)); return 0; }
    char line[512];
    int ln = 0, ok = 1;
    while (ok && fgets(line, sizeof line, f)) {
        ln++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            fprintf(stderr, "tern quantize: --layers %s:%d: line too long\n", path, ln);
            ok = 0;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strrchr(s, '=');
        if (!eq) { fprintf(stderr, "tern quantize: --layers %s:%d: '%s' is not KEY=SPEC\n", path, ln, s); ok = 0; break; }
        *eq = 0;
        char *key = trim(s), *spec = trim(eq + 1);
        if (q->nrules >= (int)(sizeof q->rules / sizeof q->rules[0])) {
            fprintf(stderr, "tern quantize: --layers %s:%d: more than %d rules\n", path, ln, (int)(sizeof q->rules / sizeof q->rules[0]));
            ok = 0;
            break;
        }
        tern_layer_rule *r = &q->rules[q->nrules];
        if (!*key || strlen(key) >= sizeof r->key) { fprintf(stderr, "tern quantize: --layers %s:%d: bad layer name '%s'\n", path, ln, key); ok = 0; break; }
        r->wtype = q->wtype;
        r->cluster = q->cluster;
        if (!tern_parse_wspec(spec, &r->wtype, &r->cluster)) {
            fprintf(stderr, "tern quantize: --layers %s:%d: bad spec '%s' (t, t:N, t:all, 4, 4:N or 8)\n", path, ln, spec);
            ok = 0;
            break;
        }
        snprintf(r->key, sizeof r->key, "%s", key);
        q->nrules++;
    }
    if (ok && ferror(f)) { fprintf(stderr, "tern quantize: --layers %s: read error\n", path); ok = 0; }
    fclose(f);
    return ok;
}

void cli_wspec_str(int wtype, int N, char *buf, size_t n) {
    if (wtype == TERN_WTYPE_INT8) snprintf(buf, n, "8");
    else if (N <= 0) snprintf(buf, n, "%s:all", wtype == TERN_WTYPE_TERNARY ? "t" : "4");
    else snprintf(buf, n, "%s:%d", wtype == TERN_WTYPE_TERNARY ? "t" : "4", N);
}

/* A name can be a key if it is non-empty, fits, has no '=', '#' or surrounding space, and no
 * other weight layer has it (else the index is written). */
static int usable_name(const tern_graph *g, const tern_qplan *p, int li) {
    const char *nm = g->nodes[p->layers[li].node].name;
    size_t len = nm ? strlen(nm) : 0;
    if (!len || len >= sizeof(((tern_layer_rule *)0)->key) || strpbrk(nm, "=#\n") || isspace((unsigned char)nm[0]) ||
        isspace((unsigned char)nm[len - 1]))
        return 0;
    for (int j = 0; j < p->nlayers; j++)
        if (j != li && p->layers[j].widx >= 0 && g->nodes[p->layers[j].node].name && !strcmp(g->nodes[p->layers[j].node].name, nm)) return 0;
    char *end;
    strtol(nm, &end, 10);
    return *end != 0; /* a name that reads as a number would be taken for an index */
}

int cli_layers_write(const char *path, const tern_graph *g, const tern_qopts *q, const char *why) {
    tern_qplan *p = NULL;
    if (tern_quant_plan(g, q, &p)) { fprintf(stderr, "tern quantize: --write-layers: %s\n", tern_last_error()); return 0; }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) { fprintf(stderr, "tern quantize: --write-layers %s: %s\n", path, strerror(errno)); tern_qplan_free(p); return 0; }
    fprintf(f, "# tern per-layer policy for %s (%s)\n# KEY=SPEC, KEY = layer name or index; replay with --layers %s\n", g->path, why, path);
    for (int i = 0; i < p->nlayers; i++) {
        const tern_qplan_layer *L = &p->layers[i];
        if (L->widx < 0) continue;
        const tern_node *n = &g->nodes[L->node];
        char spec[32];
        cli_wspec_str(L->pol.wtype, L->pol.ncl == 1 ? 0 : L->pol.N, spec, sizeof spec);
        if (usable_name(g, p, i)) fprintf(f, "%s=%s  # layer %d\n", n->name, spec, L->widx);
        else fprintf(f, "%d=%s  # %s\n", L->widx, spec, n->name ? n->name : "");
    }
    tern_qplan_free(p);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        fprintf(stderr, "tern quantize: --write-layers %s: cannot write\n", path);
        remove(tmp);
        return 0;
    }
    return 1;
}

int cli_layers_check(const tern_graph *g, const tern_qopts *q) {
    tern_qplan *p = NULL;
    if (tern_quant_plan(g, q, &p)) return 1; /* the quantizer itself reports the graph's problem */
    int ok = 1;
    for (int r = 0; r < q->nrules && ok; r++) {
        int hit = 0;
        for (int i = 0; i < p->nlayers && !hit; i++) {
            const tern_qplan_layer *L = &p->layers[i];
            if (L->widx < 0) continue;
            char idx[16];
            snprintf(idx, sizeof idx, "%d", L->widx);
            const char *nm = g->nodes[L->node].name;
            hit = !strcmp(q->rules[r].key, idx) || (nm && !strcmp(q->rules[r].key, nm));
        }
        if (!hit) {
            fprintf(stderr, "tern quantize: layer rule '%s' matches no weight layer (names or indices 0..%d; see the report table)\n",
                    q->rules[r].key, p->nweight - 1);
            ok = 0;
        }
    }
    tern_qplan_free(p);
    return ok;
}
