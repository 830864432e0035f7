/* Fork-join thread pool: tern_pool_run() splits n work items over the pool's threads and
 * returns when all are done; fn gets the item and the index (0..size-1) of the thread running it. The calling thread works too, so a pool of T has T-1 workers.
 * Hand-over: a worker that has just finished spins for up to SPIN_NS on the job counter before it
 * sleeps on the condition variable, and so does the caller waiting for the last item: the engine
 * runs one job per layer, and waking a sleeping thread (a halted vCPU on a VM) costs tens of
 * microseconds, more than a small layer takes. */
#include "core/core.h"
#include <immintrin.h>
#include <pthread.h>
#include <time.h>

enum { SPIN_NS = 50000 };

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
/* spin until *v != old (or == 0 for want_zero), at most SPIN_NS; the caller then takes the
 * mutex and checks (and sleeps) as usual, so giving up early is always safe */
static void spin_until(const int *v, int old, int want_zero) {
    const int64_t t0 = mono_ns();
    for (int i = 1;; i++) {
        const int x = __atomic_load_n(v, __ATOMIC_ACQUIRE);
        if (want_zero ? x == 0 : x != old) return;
        _mm_pause();
        if (i % 64 == 0 && mono_ns() - t0 > SPIN_NS) return;
    }
}

struct tern_pool {
    int nthreads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    void (*fn)(void *, int, int);
    int next_tid;
    void *arg;
    int n, next, pending, generation, quit;
};

/* Take items until none are left; returns when the current job has no unclaimed items. */
static void work(tern_pool *p, int tid) {
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int i = p->next < p->n ? p->next++ : -1;
        pthread_mutex_unlock(&p->mu);
        if (i < 0) return;
        p->fn(p->arg, i, tid);
        pthread_mutex_lock(&p->mu);
        if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_RELEASE) == 0) pthread_cond_broadcast(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

static void *worker(void *v) {
    tern_pool *p = v;
    int seen = 0;
    pthread_mutex_lock(&p->mu);
    int tid = ++p->next_tid;
    pthread_mutex_unlock(&p->mu);
    for (;;) {
        spin_until(&p->generation, seen, 0);
        pthread_mutex_lock(&p->mu);
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->start, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        work(p, tid);
    }
}

tern_pool *tern_pool_create(int nthreads) {
    tern_pool *p = tern_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nthreads = nthreads < 1 ? 1 : nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    if (p->nthreads > 1) {
        p->threads = tern_calloc((size_t)p->nthreads - 1, sizeof *p->threads);
        if (!p->threads) {
            free(p);
            return NULL;
        }
        for (int i = 0; i < p->nthreads - 1; i++)
            if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
                p->nthreads = i + 1; /* run with what we got */
                break;
            }
    }
    return p;
}

int tern_pool_size(const tern_pool *p) { return p ? p->nthreads : 1; }

void tern_pool_run(tern_pool *p, void (*fn)(void *arg, int i, int tid), void *arg, int n) {
    if (n <= 0) return;
    if (!p || p->nthreads == 1 || n == 1) {
        for (int i = 0; i < n; i++) fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->next = 0;
    __atomic_store_n(&p->pending, n, __ATOMIC_RELAXED);
    __atomic_store_n(&p->generation, p->generation + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    work(p, 0);
    spin_until(&p->pending, 0, 1);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void tern_pool_free(tern_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    __atomic_store_n(&p->generation, p->generation + 1, __ATOMIC_RELEASE);   /* ends the workers' spin */
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads - 1; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}
