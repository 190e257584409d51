/* carve's pod sandbox ("pause") program: holds the pod's namespaces, reaps orphans as the pod's
 * PID 1, and exits 0 on SIGINT/SIGTERM. Built static (cc -static) into the pause image by
 * carve_cri::image::pause_image_tar; the image has no other file. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, 0, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction term = {.sa_handler = stop};
    struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigaction(SIGINT, &term, 0);
    sigaction(SIGTERM, &term, 0);
    sigaction(SIGCHLD, &child, 0);
    for (;;)
        pause();
}
