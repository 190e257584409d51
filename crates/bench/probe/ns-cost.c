/* ns-cost: the null-syscall and pipe ping-pong loops of carve-probe, timed in many short
 * batches (2000 getppid calls, 100 round trips) so a preempted batch is an outlier, not the
 * figure: prints the 10th percentile and the median of each, the core it ran on, and the
 * /proc/self/status lines a runtime could change (NoNewPrivs, speculation controls).
 * Used to take a container apart ingredient by ingredient (ns-cost.sh, docs/performance.md).
 *
 *   gcc -static -O2 -o /tmp/ns-cost crates/bench/probe/ns-cost.c
 *   taskset -c 1 /tmp/ns-cost [BATCHES]                                                      */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}
static uint64_t op_getppid(long n) {
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    return now_ns() - t0;
}
static uint64_t op_ctx(long n) {
    int ab[2], ba[2];
    char c = 0;
    if (pipe(ab) || pipe(ba)) exit(2);
    pid_t p = fork();
    if (p < 0) exit(2);
    if (p == 0) {
        for (long i = 0; i <= n; i++)
            if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1) _exit(1);
        _exit(0);
    }
    if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1) exit(2);
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1) exit(2);
    uint64_t dt = now_ns() - t0;
    waitpid(p, NULL, 0);
    close(ab[0]); close(ab[1]); close(ba[0]); close(ba[1]);
    return dt;
}
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
/* 10th percentile and median of ns per operation over `b` batches of `n`. */
static void measure(uint64_t (*op)(long), long n, int b, double *p10, double *med) {
    static double v[1000];
    op(n);
    for (int i = 0; i < b; i++) v[i] = (double)op(n) / (double)n;
    qsort(v, b, sizeof v[0], cmp);
    *p10 = v[b / 10];
    *med = v[b / 2];
}
int main(int argc, char **argv) {
    int b = argc > 1 ? atoi(argv[1]) : 200;
    if (b < 10 || b > 1000) { fprintf(stderr, "ns-cost: BATCHES 10..1000\n"); return 2; }
    double g10, gmed, c10, cmed;
    measure(op_getppid, 2000, b, &g10, &gmed);
    measure(op_ctx, 100, b, &c10, &cmed);
    printf("getppid %.2f ctx %.1f gmed %.2f cmed %.1f cpu %d ", g10, c10, gmed, cmed, sched_getcpu());
    FILE *f = fopen("/proc/self/status", "r");
    char l[256];
    while (f && fgets(l, sizeof l, f))
        if (!strncmp(l, "NoNewPrivs", 10) || !strncmp(l, "Speculation", 11)) {
            l[strcspn(l, "\n")] = 0;
            char *t = strchr(l, '\t');
            printf("%s|", t ? t + 1 : l);
        }
    printf("\n");
    return 0;
}
