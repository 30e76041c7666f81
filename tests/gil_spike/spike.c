/* A C call that holds a RAM spike while keeping the GIL (loaded with ctypes.PyDLL, which
 * never releases it): map `bytes` of anonymous memory, touch every page, hold it for
 * `hold_ms`, unmap it. Nothing in this process's Python can run meanwhile. */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int hold_spike(size_t bytes, unsigned hold_ms) {
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    long page = sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < bytes; off += (size_t)page) p[off] = 1;
    struct timespec ts = {hold_ms / 1000, (long)(hold_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
    munmap(p, bytes);
    return 0;
}
