/* carve-probe: the one static program `carve bench` runs natively, in a container, on a
 * dedicated core and in a VM, so every tier runs the same machine code.
 *
 *   carve-probe overhead [--quick] [--batches N] [--batch-us US]
 *                                               lmbench-like rows, JSON between markers
 *   carve-probe periodic PERIOD_US SECONDS     fixed work units counted per period (seed 004)
 *   carve-probe stress                          CPU, memory-bandwidth, fork and file-I/O load
 *   carve-probe sink PORT | flood ADDR PORT     UDP load over a bridge
 *
 * Built by carve-bench with `gcc -static -O2` (crates/bench/src/probe.rs); the source is
 * compiled into carve so the benchmark needs no separate install. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char self_path[4096];

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* ---- overhead rows: each op(n) runs n operations ---- */
static int zero_fd, null_fd;
static const char *file_path = "/tmp/carve-probe-file";

static uint64_t op_getppid(long n) {
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    return now_ns() - t0;
}
static uint64_t op_read(long n) {
    uint64_t t0 = now_ns();
    char c;
    for (long i = 0; i < n; i++)
        if (read(zero_fd, &c, 1) != 1) die("read /dev/zero");
    return now_ns() - t0;
}
static uint64_t op_write(long n) {
    uint64_t t0 = now_ns();
    char c = 0;
    for (long i = 0; i < n; i++)
        if (write(null_fd, &c, 1) != 1) die("write /dev/null");
    return now_ns() - t0;
}
static uint64_t op_open_close(long n) {
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        int fd = open(file_path, O_RDONLY);
        if (fd < 0) die("open");
        close(fd);
    }
    return now_ns() - t0;
}
static uint64_t op_stat(long n) {
    uint64_t t0 = now_ns();
    struct stat st;
    for (long i = 0; i < n; i++)
        if (stat(file_path, &st) != 0) die("stat");
    return now_ns() - t0;
}
static uint64_t op_fork_exit(long n) {
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0) die("fork");
        if (p == 0) _exit(0);
        waitpid(p, NULL, 0);
    }
    return now_ns() - t0;
}
static uint64_t op_fork_exec(long n) {
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0) die("fork");
        if (p == 0) {
            char *argv[] = {self_path, "exit", NULL};
            execv(self_path, argv);
            _exit(127);
        }
        int st;
        waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "carve-probe: execve of %s failed\n", self_path);
            exit(2);
        }
    }
    return now_ns() - t0;
}
/* Ping-pong of one byte between two processes over two fds; n round trips. */
static uint64_t ping_pong(int a_rd, int a_wr, int b_rd, int b_wr, long n) {
    pid_t p = fork();
    if (p < 0) die("fork");
    char c = 0;
    if (p == 0) {
        for (long i = 0; i <= n; i++) {
            if (read(b_rd, &c, 1) != 1) _exit(1);
            if (write(b_wr, &c, 1) != 1) _exit(1);
        }
        _exit(0);
    }
    /* One exchange first: the child is running before the clock starts. */
    if (write(a_wr, &c, 1) != 1 || read(a_rd, &c, 1) != 1) die("ping-pong");
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (write(a_wr, &c, 1) != 1) die("ping");
        if (read(a_rd, &c, 1) != 1) die("pong");
    }
    uint64_t dt = now_ns() - t0;
    waitpid(p, NULL, 0);
    return dt;
}
static uint64_t op_ctx(long n) {
    int ab[2], ba[2];
    if (pipe(ab) || pipe(ba)) die("pipe");
    uint64_t dt = ping_pong(ba[0], ab[1], ab[0], ba[1], n);
    close(ab[0]); close(ab[1]); close(ba[0]); close(ba[1]);
    return dt;
}
static uint64_t op_unix(long n) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair");
    uint64_t dt = ping_pong(sv[0], sv[0], sv[1], sv[1], n);
    close(sv[0]); close(sv[1]);
    return dt;
}
#define PIPE_CHUNK (64 * 1024)
static char chunk[PIPE_CHUNK];
/* n MiB through a pipe to a child that reads them. */
static uint64_t op_pipe_bw(long n) {
    uint64_t t0 = now_ns();
    int fd[2];
    if (pipe(fd)) die("pipe");
    pid_t p = fork();
    if (p < 0) die("fork");
    long total = n * 1024 * 1024;
    if (p == 0) {
        close(fd[1]);
        static char buf[PIPE_CHUNK];
        long got = 0;
        while (got < total) {
            ssize_t r = read(fd[0], buf, sizeof buf);
            if (r <= 0) _exit(1);
            got += r;
        }
        _exit(0);
    }
    close(fd[0]);
    for (long sent = 0; sent < total;) {
        ssize_t w = write(fd[1], chunk, PIPE_CHUNK);
        if (w <= 0) die("pipe write");
        sent += w;
    }
    close(fd[1]);
    waitpid(p, NULL, 0);
    return now_ns() - t0;
}
static uint64_t op_mmap(long n) {
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) die("mmap");
        munmap(p, 1 << 20);
    }
    return now_ns() - t0;
}
/* n first touches of fresh anonymous pages (the mapping is made and dropped per 256 pages). */
static uint64_t op_fault(long n) {
    uint64_t t0 = now_ns();
    long page = sysconf(_SC_PAGESIZE);
    for (long done = 0; done < n;) {
        long k = n - done < 256 ? n - done : 256;
        volatile char *p = mmap(NULL, k * page, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) die("mmap");
        for (long i = 0; i < k; i++) p[i * page] = 1;
        munmap((void *)p, k * page);
        done += k;
    }
    return now_ns() - t0;
}
static char *cp_src, *cp_dst;
#define CP_BYTES (8 << 20)
/* n MiB of memcpy, 1 MiB at a time cycling through 8 MiB (larger than most L2s, so it is
 * L3/memory bandwidth). */
static uint64_t op_memcpy(long n) {
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        size_t off = (size_t)(i % 8) << 20;
        memcpy(cp_dst + off, cp_src + off, 1 << 20);
        __asm__ volatile("" ::"r"(cp_dst) : "memory");
    }
    return now_ns() - t0;
}
/* Compile-like work in place of seed 004's tcc: lex a generated source text, intern the
 * identifiers in a hash table, and evaluate its expressions with an operator stack. */
static char src[64 * 1024];
static void gen_source(void) {
    uint32_t x = 12345;
    size_t o = 0;
    const char *ops = "+-*^&|";
    while (o < sizeof src - 64) {
        x = x * 1103515245u + 12345u;
        o += snprintf(src + o, sizeof src - o, "v%u = v%u %c %u;\n", (x >> 8) % 512,
                      (x >> 4) % 512, ops[(x >> 20) % 6], (x >> 12) % 1000);
    }
    src[o] = 0;
}
static uint64_t compile_once(void) {
    static uint64_t vals[1024];
    static uint32_t keys[1024];
    memset(keys, 0, sizeof keys);
    memset(vals, 0, sizeof vals);
    uint64_t sum = 0, stack[16];
    int sp = 0;
    char op = 0;
    for (const char *s = src; *s;) {
        if (*s == 'v') {
            uint32_t h = 2166136261u, id = 0;
            s++;
            while (*s >= '0' && *s <= '9') { id = id * 10 + (*s - '0'); h = (h ^ *s++) * 16777619u; }
            uint32_t slot = h & 1023;
            while (keys[slot] && keys[slot] != id + 1) slot = (slot + 1) & 1023;
            keys[slot] = id + 1;
            if (sp < 16) stack[sp++] = vals[slot] + id;
        } else if (*s >= '0' && *s <= '9') {
            uint64_t v = 0;
            while (*s >= '0' && *s <= '9') v = v * 10 + (uint64_t)(*s++ - '0');
            if (sp > 0) {
                uint64_t a = stack[sp - 1];
                switch (op) {
                case '+': a += v; break; case '-': a -= v; break; case '*': a *= v; break;
                case '^': a ^= v; break; case '&': a &= v | 1; break; default: a |= v;
                }
                stack[sp - 1] = a;
            }
        } else if (*s == ';') {
            if (sp > 0) sum += stack[--sp];
            sp = 0;
            s++;
        } else {
            if (*s != ' ' && *s != '=' && *s != '\n') op = *s;
            s++;
        }
    }
    return sum;
}
static uint64_t op_compile(long n) {
    uint64_t t0 = now_ns();
    uint64_t s = 0;
    for (long i = 0; i < n; i++) s += compile_once();
    __asm__ volatile("" ::"r"(s));
    return now_ns() - t0;
}

struct row {
    const char *name, *unit, *seed;
    uint64_t (*op)(long);
    long min_n; /* fewest operations per batch */
};
static const struct row rows[] = {
    {"getppid", "ns/call", "syscall", op_getppid, 0},
    {"read 1 B /dev/zero", "ns/call", "", op_read, 0},
    {"write 1 B /dev/null", "ns/call", "", op_write, 0},
    {"open+close", "ns/pair", "", op_open_close, 0},
    {"stat", "ns/call", "", op_stat, 0},
    {"fork+exit", "ns/process", "fork", op_fork_exit, 2},
    {"fork+execve", "ns/process", "", op_fork_exec, 2},
    {"ctx switch (pipe ping-pong)", "ns/round trip", "ctx", op_ctx, 100},
    {"pipe bandwidth", "ns/MiB", "pipe", op_pipe_bw, 16},
    {"AF_UNIX round trip", "ns/round trip", "", op_unix, 100},
    {"mmap+munmap 1 MiB", "ns/pair", "", op_mmap, 0},
    {"page fault (first touch)", "ns/page", "", op_fault, 0},
    {"memcpy bandwidth", "ns/MiB", "", op_memcpy, 16},
    {"compile-like task", "ns/64 KiB", "tcc", op_compile, 0},
};

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Many short batches, not a few long ones: on a shared host a 20 ms batch nearly always holds a
 * preemption by another task, so its median measured the host's load (native against native
 * differed by up to 0.5-1.4x at load 9); a batch of about 1 ms is mostly uninterrupted and the
 * median of many of them is the operation's own cost (docs/performance.md, "What the container
 * costs"). */
#define MAX_BATCHES 1001
static int overhead(int batches, uint64_t batch_ns) {
    zero_fd = open("/dev/zero", O_RDONLY);
    null_fd = open("/dev/null", O_WRONLY);
    if (zero_fd < 0 || null_fd < 0) die("open /dev/zero or /dev/null");
    int f = open(file_path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (f < 0) die("create /tmp/carve-probe-file");
    close(f);
    cp_src = malloc(CP_BYTES);
    cp_dst = malloc(CP_BYTES);
    if (!cp_src || !cp_dst) die("malloc");
    memset(cp_src, 1, CP_BYTES);
    memset(cp_dst, 2, CP_BYTES);
    gen_source();
    printf("CARVE-PROBE-BEGIN\n{\"batches\": %d, \"batch_ns\": %llu, \"rows\": [", batches,
           (unsigned long long)batch_ns);
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        /* Calibrate: grow n until one batch lasts batch_ns (warms caches on the way). The
         * fastest of three tries counts, so a preempted try does not stop it short. */
        long n = rows[r].min_n > 0 ? rows[r].min_n : 1;
        for (;;) {
            uint64_t dt = rows[r].op(n);
            for (int k = 0; k < 2 && dt >= batch_ns; k++) {
                uint64_t again = rows[r].op(n);
                if (again < dt) dt = again;
            }
            if (dt >= batch_ns || n >= (1l << 40)) break;
            long next = dt > 0 ? (long)((double)n * batch_ns / dt * 1.1) : n * 8;
            n = next > n * 8 ? n * 8 : (next > n ? next : n * 2);
        }
        static double per[MAX_BATCHES];
        for (int b = 0; b < batches; b++) {
            per[b] = (double)rows[r].op(n) / (double)n;
        }
        static double sorted[MAX_BATCHES];
        memcpy(sorted, per, sizeof(double) * batches);
        qsort(sorted, batches, sizeof(double), cmp_d);
        double med = batches % 2 ? sorted[batches / 2]
                                 : (sorted[batches / 2 - 1] + sorted[batches / 2]) / 2;
        printf("%s\n  {\"name\": \"%s\", \"unit\": \"%s\", \"seed\": \"%s\", \"ops_per_batch\": %ld, "
               "\"median\": %.3f, \"min\": %.3f, \"max\": %.3f}",
               r ? "," : "", rows[r].name, rows[r].unit, rows[r].seed, n, med, sorted[0],
               sorted[batches - 1]);
        fflush(stdout);
    }
    printf("\n]}\nCARVE-PROBE-END\n");
    unlink(file_path);
    return 0;
}

/* ---- periodic probe (seed 004): units of fixed work counted in each period ---- */
static volatile uint64_t sink_v;
static inline void unit(void) {
    uint64_t x = sink_v | 1;
    for (int i = 0; i < 64; i++) x = x * 6364136223846793005ull + 1442695040888963407ull;
    sink_v = x;
}
static int periodic(long period_us, double seconds) {
    long periods = (long)(seconds * 1e6 / period_us);
    if (periods < 1) periods = 1;
    uint32_t *counts = calloc(periods, sizeof *counts);
    if (!counts) die("calloc");
    uint64_t period = (uint64_t)period_us * 1000;
    /* 100 ms of warm-up so the first period does not pay for page faults or frequency. */
    uint64_t warm = now_ns() + 100000000ull;
    while (now_ns() < warm) unit();
    uint64_t start = now_ns();
    for (long i = 0; i < periods; i++) {
        uint64_t end = start + (uint64_t)(i + 1) * period;
        uint32_t c = 0;
        while (now_ns() < end) { unit(); c++; }
        counts[i] = c;
    }
    printf("CARVE-PROBE-BEGIN\n{\"period_us\": %ld, \"cpu\": %d, \"counts\": [", period_us,
           sched_getcpu());
    for (long i = 0; i < periods; i++) printf("%s%u", i ? "," : "", counts[i]);
    printf("]}\nCARVE-PROBE-END\n");
    return 0;
}

/* ---- load ---- */
static void forever_child(void (*f)(void)) {
    pid_t p = fork();
    if (p == 0) { for (;;) f(); }
    if (p < 0) die("fork");
}
static void cpu_load(void) { unit(); }
static void mem_load(void) {
    static char *a, *b;
    if (!a) { a = malloc(32 << 20); b = malloc(32 << 20); memset(a, 3, 32 << 20); }
    memcpy(b, a, 32 << 20);
    __asm__ volatile("" ::"r"(b) : "memory");
}
static void fork_load(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    if (p > 0) waitpid(p, NULL, 0);
}
static void io_load(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/carve-probe-io-%d", getpid());
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0) { sleep(1); return; }
    for (int i = 0; i < 64; i++)
        if (write(fd, chunk, sizeof chunk) < 0) break;
    fsync(fd);
    lseek(fd, 0, SEEK_SET);
    while (read(fd, chunk, sizeof chunk) > 0) {}
    close(fd);
    unlink(path);
}
static int stress(void) {
    forever_child(cpu_load);
    forever_child(mem_load);
    forever_child(fork_load);
    forever_child(io_load);
    printf("carve-probe: stress running (cpu, memory, fork, file I/O)\n");
    fflush(stdout);
    for (;;) pause();
    return 0;
}
static int udp(const char *addr, int port, int send) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) die("socket");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (send) {
        if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) die("address");
        printf("carve-probe: flooding %s:%d\n", addr, port);
        fflush(stdout);
        for (;;) sendto(s, chunk, 1400, 0, (struct sockaddr *)&sa, sizeof sa);
    }
    if (bind(s, (struct sockaddr *)&sa, sizeof sa)) die("bind");
    for (;;) recv(s, chunk, sizeof chunk, 0);
    return 0;
}

int main(int argc, char **argv) {
    ssize_t l = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (l <= 0) snprintf(self_path, sizeof self_path, "%s", argv[0]);
    if (argc >= 2 && !strcmp(argv[1], "exit")) return 0;
    if (argc >= 2 && !strcmp(argv[1], "overhead")) {
        int batches = 101, quick = 0;
        long batch_us = 1000;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--quick")) quick = 1;
            else if (!strcmp(argv[i], "--batches") && i + 1 < argc) batches = atoi(argv[++i]);
            else if (!strcmp(argv[i], "--batch-us") && i + 1 < argc) batch_us = atol(argv[++i]);
            else { fprintf(stderr, "carve-probe overhead: unknown argument %s\n", argv[i]); return 2; }
        }
        if (quick && batches == 101) batches = 21;
        if (batches < 1 || batches > MAX_BATCHES || batch_us < 1) {
            fprintf(stderr, "carve-probe overhead: --batches 1..%d and --batch-us >= 1\n", MAX_BATCHES);
            return 2;
        }
        return overhead(batches, (uint64_t)batch_us * 1000);
    }
    if (argc >= 4 && !strcmp(argv[1], "periodic")) return periodic(atol(argv[2]), atof(argv[3]));
    if (argc >= 2 && !strcmp(argv[1], "stress")) return stress();
    if (argc >= 3 && !strcmp(argv[1], "sink")) return udp(NULL, atoi(argv[2]), 0);
    if (argc >= 4 && !strcmp(argv[1], "flood")) return udp(argv[2], atoi(argv[3]), 1);
    if (argc >= 2 && !strcmp(argv[1], "load")) {
        /* stress and a UDP sink in one container */
        if (fork() == 0) return udp(NULL, argc >= 3 ? atoi(argv[2]) : 9999, 0);
        return stress();
    }
    fprintf(stderr, "usage: carve-probe overhead [--quick] [--batches N] [--batch-us US] | periodic PERIOD_US SECONDS | stress |"
                    " load [PORT] | sink PORT | flood ADDR PORT\n");
    return 2;
}
