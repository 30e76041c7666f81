/* A stand-in for macOS libproc's proc_pid_rusage, built on Linux by the tests.
 *
 * The struct is Apple's rusage_info_v0 (<sys/resource.h>, macOS 10.9+) and the failures
 * are the kernel's (xnu bsd/kern/proc_info.c, proc_pid_rusage): -1 with errno ESRCH for
 * no such process, EPERM for another user's, EINVAL for an unknown flavour; a zombie's
 * ri_phys_footprint is 0. The figures come from /proc so they follow the real process:
 *   ri_resident_size  = the process's RSS (/proc/PID/statm),
 *   ri_phys_footprint = that RSS + FAKE_LIBPROC_EXTRA_BYTES (so a reader that took the
 *                       wrong field is off by that much),
 * and every other field a distinct marker nobody should report.
 * FAKE_LIBPROC_EPERM=others refuses every process but the caller's own (another user's,
 * or a sandbox); FAKE_LIBPROC_EPERM=all refuses the caller too. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rusage_info_v0 {
    uint8_t ri_uuid[16];
    uint64_t ri_user_time;
    uint64_t ri_system_time;
    uint64_t ri_pkg_idle_wkups;
    uint64_t ri_interrupt_wkups;
    uint64_t ri_pageins;
    uint64_t ri_wired_size;
    uint64_t ri_resident_size;
    uint64_t ri_phys_footprint;
    uint64_t ri_proc_start_abstime;
    uint64_t ri_proc_exit_abstime;
};

_Static_assert(offsetof(struct rusage_info_v0, ri_phys_footprint) == 72, "layout");
_Static_assert(sizeof(struct rusage_info_v0) == 96, "size");

#define RUSAGE_INFO_V6 6

static int state_of(int pid, char *state) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *fh = fopen(path, "r");
    if (!fh) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, fh);
    fclose(fh);
    buf[n] = 0;
    char *end = strrchr(buf, ')');
    if (!end || end[1] != ' ') return -1;
    *state = end[2];
    return 0;
}

static int rss_of(int pid, uint64_t *bytes) {
    char path[64];
    unsigned long size, resident;
    snprintf(path, sizeof path, "/proc/%d/statm", pid);
    FILE *fh = fopen(path, "r");
    if (!fh) return -1;
    int got = fscanf(fh, "%lu %lu", &size, &resident);
    fclose(fh);
    if (got != 2) return -1;
    *bytes = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
    return 0;
}

int proc_pid_rusage(int pid, int flavor, void *buffer) {
    char state;
    if (pid <= 0 || state_of(pid, &state) != 0) {
        errno = ESRCH;
        return -1;
    }
    const char *refuse = getenv("FAKE_LIBPROC_EPERM");
    if (refuse && (strcmp(refuse, "all") == 0 || (strcmp(refuse, "others") == 0 && pid != getpid()))) {
        errno = EPERM;
        return -1;
    }
    if (flavor < 0 || flavor > RUSAGE_INFO_V6) {
        errno = EINVAL;
        return -1;
    }
    struct rusage_info_v0 ri;
    memset(ri.ri_uuid, 0xAB, sizeof ri.ri_uuid);
    ri.ri_user_time = 0x1111111111ULL;
    ri.ri_system_time = 0x2222222222ULL;
    ri.ri_pkg_idle_wkups = 0x3333333333ULL;
    ri.ri_interrupt_wkups = 0x4444444444ULL;
    ri.ri_pageins = 0x5555555555ULL;
    ri.ri_wired_size = 0x6666666666ULL;
    ri.ri_resident_size = 0;
    ri.ri_phys_footprint = 0;
    ri.ri_proc_start_abstime = 0x7777777777ULL;
    ri.ri_proc_exit_abstime = 0;
    if (state == 'Z') {
        ri.ri_proc_exit_abstime = 0x8888888888ULL;
    } else {
        uint64_t rss;
        if (rss_of(pid, &rss) != 0) { /* ended between the two reads */
            errno = ESRCH;
            return -1;
        }
        const char *extra = getenv("FAKE_LIBPROC_EXTRA_BYTES");
        ri.ri_resident_size = rss;
        ri.ri_phys_footprint = rss + (extra ? strtoull(extra, NULL, 10) : 0);
    }
    /* The kernel copies out sizeof(the flavour's struct); later ones only append. */
    memcpy(buffer, &ri, sizeof ri);
    return 0;
}
