/* What a seccomp filter costs one syscall (getppid), apart from any container: three children
 * alternate — no filter; a filter the kernel's action cache (Linux >= 5.11) proves "always
 * allow", so the BPF program never runs; and the same 300 compares made uncacheable by loading
 * args[0] first, so the whole program runs on every syscall. Each child reports the median of
 * 9 batches of 200000 calls; the figure is the median over rounds (min and max beside it).
 *
 *   gcc -O2 -o /tmp/seccomp-cost crates/bench/probe/seccomp-cost.c
 *   taskset -c 1 /tmp/seccomp-cost 15      # rounds
 *
 * A hand check behind docs/performance.md ("Overhead per tier"), not part of `carve bench`. */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/audit.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
static void install(int cacheable) {
    static struct sock_filter f[400];
    int n = 0;
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, cacheable ? 4 : 16);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0);
    for (int i = 0; i < 300; i++) /* numbers no syscall has: every compare fails */
        f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 100000 + i, 0, 0);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog p = { n, f };
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p)) { perror("seccomp"); exit(1); }
}
static double child(int mode) {
    int fd[2]; pipe(fd);
    if (!fork()) {
        if (mode) install(mode == 1);
        double best[9];
        for (int b = 0; b < 9; b++) {
            double t = now();
            for (int i = 0; i < 200000; i++) syscall(SYS_getppid);
            best[b] = (now() - t) / 200000;
        }
        qsort(best, 9, sizeof best[0], cmp);
        write(fd[1], &best[4], sizeof(double));
        _exit(0);
    }
    double v; read(fd[0], &v, sizeof v); wait(0); close(fd[0]); close(fd[1]);
    return v;
}
int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1 || rounds > 64) { fprintf(stderr, "rounds: 1..64\n"); return 2; }
    const char *name[] = { "no filter", "cached filter", "uncached filter (300 compares)" };
    double v[3][64];
    for (int r = 0; r < rounds; r++) for (int m = 0; m < 3; m++) v[m][r] = child(m);
    for (int m = 0; m < 3; m++) {
        qsort(v[m], rounds, sizeof(double), cmp);
        printf("%-32s getppid %.1f ns (median of %d rounds; min %.1f max %.1f)\n", name[m], v[m][rounds / 2], rounds, v[m][0], v[m][rounds - 1]);
    }
    return 0;
}
