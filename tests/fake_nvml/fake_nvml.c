/*
 * A fake libnvidia-ml.so.1 for tests: exports the NVML symbols nvidia-ml-py calls on
 * pytest-hypomnesis's paths and answers from a text file named by $FAKE_NVML_CONFIG,
 * re-read on every call so a test can change figures while a reader is running.
 *
 * Config lines (fields separated by single spaces; unknown lines are ignored):
 *   driver <version, rest of line, may be empty>
 *   device <total> <free> <used> <reserved|-> <name, rest of line, \xNN escapes>
 *   process <device index> <pid|self> <used bytes>
 *   error <function name|*> <nvml return code>
 * "self" is getpid() of the calling process; "-" makes nvmlDeviceGetMemoryInfo_v2 return
 * NOT_SUPPORTED; "*" applies to every function but nvmlErrorString and nvmlShutdown.
 * No config file: nvmlInit returns DRIVER_NOT_LOADED.
 *
 * Build variants: -DNO_V3 / -DNO_V2 drop the versioned process queries, -DNO_MEMV2 drops
 * nvmlDeviceGetMemoryInfo_v2 (a pre-R510 driver).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/stat.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;
typedef struct fake_device *nvmlDevice_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
};

#define MAX_DEVICES 16
#define MAX_PROCESSES 8192
#define MAX_ERRORS 64
#define MEMORY_V2_VERSION 0x02000028u

typedef struct { unsigned int pid; unsigned long long usedGpuMemory; } nvmlProcessInfo_v1_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_v2_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

struct fake_device {
    char name[128];
    unsigned long long total, free, used, reserved;
    int has_reserved;
};

struct fake_process { unsigned int device, pid; unsigned long long used; int is_self; };
struct fake_error { char function[96]; int code; };

struct fake_config {
    int loaded;
    char driver[96];
    int has_driver;
    unsigned int device_count;
    struct fake_device devices[MAX_DEVICES];
    unsigned int process_count;
    struct fake_process processes[MAX_PROCESSES];
    unsigned int error_count;
    struct fake_error errors[MAX_ERRORS];
};

/* Handles must outlive a call, so they point into a table that is never rewritten. */
static struct fake_device handle_table[MAX_DEVICES];
static volatile int init_refcount;
static volatile unsigned int init_calls, shutdown_calls, query_calls;

static void rest_of_line(char *dst, size_t size, const char *src) {
    size_t n = 0;
    while (*src && *src != '\n' && *src != '\r' && n + 1 < size) {
        if (src[0] == '\\' && src[1] == 'x' && src[2] && src[3]) {
            char hex[3] = {src[2], src[3], 0};
            dst[n++] = (char)strtoul(hex, NULL, 16);
            src += 4;
        } else {
            dst[n++] = *src++;
        }
    }
    dst[n] = 0;
}

static void parse(struct fake_config *cfg, FILE *f) {
    cfg->loaded = 1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "driver ", 7) == 0) {
            rest_of_line(cfg->driver, sizeof cfg->driver, line + 7);
            cfg->has_driver = 1;
        } else if (strncmp(line, "device ", 7) == 0 && cfg->device_count < MAX_DEVICES) {
            struct fake_device *d = &cfg->devices[cfg->device_count];
            char reserved[32];
            int used_chars = 0;
            if (sscanf(line + 7, "%llu %llu %llu %31s %n", &d->total, &d->free, &d->used,
                       reserved, &used_chars) < 4)
                continue;
            d->has_reserved = strcmp(reserved, "-") != 0;
            d->reserved = d->has_reserved ? strtoull(reserved, NULL, 10) : 0;
            rest_of_line(d->name, sizeof d->name, line + 7 + used_chars);
            cfg->device_count++;
        } else if (strncmp(line, "process ", 8) == 0 && cfg->process_count < MAX_PROCESSES) {
            struct fake_process *p = &cfg->processes[cfg->process_count];
            char pid[32];
            if (sscanf(line + 8, "%u %31s %llu", &p->device, pid, &p->used) != 3) continue;
            p->is_self = strcmp(pid, "self") == 0;
            p->pid = p->is_self ? 0 : (unsigned int)strtoul(pid, NULL, 10);
            cfg->process_count++;
        } else if (strncmp(line, "error ", 6) == 0 && cfg->error_count < MAX_ERRORS) {
            struct fake_error *e = &cfg->errors[cfg->error_count];
            if (sscanf(line + 6, "%95s %d", e->function, &e->code) == 2) cfg->error_count++;
        }
    }
}

/* The parsed config, re-parsed only when the file changes. Tests write it by rename, so
 * a new inode (or size/mtime) means new contents; a stat costs far less than a parse, so
 * the fake answers about as fast as a driver would and benchmarks measure our code. */
static struct fake_config cache;
static dev_t cache_dev;
static ino_t cache_ino;
static off_t cache_size;
static struct timespec cache_mtime;
static char cache_path[4096];
static int cache_valid;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void load(struct fake_config *cfg) {
    /* Only the counters: zeroing the whole process table on every call would cost more
     * than the rest of the call. */
    cfg->loaded = cfg->has_driver = 0;
    cfg->device_count = cfg->process_count = cfg->error_count = 0;
    const char *path = getenv("FAKE_NVML_CONFIG");
    struct stat st;
    if (!path || stat(path, &st) != 0) return;
    pthread_mutex_lock(&cache_lock);
    int fresh = cache_valid && st.st_dev == cache_dev && st.st_ino == cache_ino &&
                st.st_size == cache_size && st.st_mtim.tv_sec == cache_mtime.tv_sec &&
                st.st_mtim.tv_nsec == cache_mtime.tv_nsec && strcmp(path, cache_path) == 0;
    if (!fresh) {
        FILE *f = fopen(path, "r");
        cache_valid = 0;
        if (f) {
            cache.loaded = cache.has_driver = 0;
            cache.device_count = cache.process_count = cache.error_count = 0;
            parse(&cache, f);
            fclose(f);
            cache_dev = st.st_dev;
            cache_ino = st.st_ino;
            cache_size = st.st_size;
            cache_mtime = st.st_mtim;
            strncpy(cache_path, path, sizeof cache_path - 1);
            cache_valid = 1;
        }
    }
    if (cache_valid) {
        cfg->loaded = cache.loaded;
        cfg->has_driver = cache.has_driver;
        memcpy(cfg->driver, cache.driver, sizeof cfg->driver);
        cfg->device_count = cache.device_count;
        memcpy(cfg->devices, cache.devices, cache.device_count * sizeof cache.devices[0]);
        cfg->process_count = cache.process_count;
        memcpy(cfg->processes, cache.processes, cache.process_count * sizeof cache.processes[0]);
        cfg->error_count = cache.error_count;
        memcpy(cfg->errors, cache.errors, cache.error_count * sizeof cache.errors[0]);
    }
    pthread_mutex_unlock(&cache_lock);
    /* "self" is whoever reads the config now: resolved per call, so a fork sees its pid. */
    unsigned int me = (unsigned int)getpid();
    for (unsigned int i = 0; i < cfg->process_count; i++)
        if (cfg->processes[i].is_self) cfg->processes[i].pid = me;
}

/* Loads the config into *cfg and returns the configured error for `function`, if any. */
static nvmlReturn_t enter(struct fake_config *cfg, const char *function, int needs_init) {
    __sync_fetch_and_add(&query_calls, 1);
    load(cfg);
    for (unsigned int i = 0; i < cfg->error_count; i++) {
        const char *f = cfg->errors[i].function;
        int wildcard = strcmp(f, "*") == 0 && strcmp(function, "nvmlShutdown") != 0;
        if (wildcard || strcmp(f, function) == 0) return cfg->errors[i].code;
    }
    if (needs_init && init_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    return NVML_SUCCESS;
}

static struct fake_config *new_config(void) { return malloc(sizeof(struct fake_config)); }

#define BEGIN(name, needs_init)                                     \
    struct fake_config *cfg = new_config();                         \
    if (!cfg) return NVML_ERROR_INVALID_ARGUMENT;                   \
    nvmlReturn_t ret = enter(cfg, name, needs_init);                \
    if (ret != NVML_SUCCESS) goto done;
#define END  \
    done:    \
    free(cfg); \
    return ret;

static struct fake_device *lookup(struct fake_config *cfg, nvmlDevice_t device, int *index) {
    if (device < handle_table || device >= handle_table + MAX_DEVICES) return NULL;
    *index = (int)(device - handle_table);
    return (unsigned int)*index < cfg->device_count ? &cfg->devices[*index] : NULL;
}

static nvmlReturn_t do_init(const char *name) {
    __sync_fetch_and_add(&init_calls, 1);
    BEGIN(name, 0)
    if (!cfg->loaded) { ret = NVML_ERROR_DRIVER_NOT_LOADED; goto done; }
    __sync_fetch_and_add(&init_refcount, 1);
    END
}

EXPORT nvmlReturn_t nvmlInit_v2(void) { return do_init("nvmlInit_v2"); }
EXPORT nvmlReturn_t nvmlInit(void) { return do_init("nvmlInit"); }
EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return do_init("nvmlInitWithFlags");
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
    __sync_fetch_and_add(&shutdown_calls, 1);
    BEGIN("nvmlShutdown", 1)
    __sync_fetch_and_sub(&init_refcount, 1);
    END
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 7: return "Insufficient Size";
    case 9: return "Driver Not Loaded";
    case 13: return "Function Not Found";
    case 15: return "GPU is lost";
    case 999: return "Unknown Error";
    default: return "Fake NVML error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    BEGIN("nvmlSystemGetDriverVersion", 1)
    if (!cfg->has_driver) { ret = NVML_ERROR_NOT_SUPPORTED; goto done; }
    if (strlen(cfg->driver) + 1 > length) { ret = NVML_ERROR_INSUFFICIENT_SIZE; goto done; }
    strcpy(version, cfg->driver);
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    BEGIN("nvmlDeviceGetCount_v2", 1)
    *count = cfg->device_count;
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    BEGIN("nvmlDeviceGetHandleByIndex_v2", 1)
    if (index >= cfg->device_count) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    *device = &handle_table[index];
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    BEGIN("nvmlDeviceGetName", 1)
    int index;
    struct fake_device *d = lookup(cfg, device, &index);
    if (!d) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    if (strlen(d->name) + 1 > length) { ret = NVML_ERROR_INSUFFICIENT_SIZE; goto done; }
    strcpy(name, d->name);
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    BEGIN("nvmlDeviceGetMemoryInfo", 1)
    int index;
    struct fake_device *d = lookup(cfg, device, &index);
    if (!d) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    memory->total = d->total;
    memory->free = d->free;
    memory->used = d->used;
    END
}

#ifndef NO_MEMV2
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    BEGIN("nvmlDeviceGetMemoryInfo_v2", 1)
    int index;
    struct fake_device *d = lookup(cfg, device, &index);
    if (!d) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    if (memory->version != MEMORY_V2_VERSION) { ret = NVML_ERROR_ARGUMENT_VERSION_MISMATCH; goto done; }
    if (!d->has_reserved) { ret = NVML_ERROR_NOT_SUPPORTED; goto done; }
    /* v2 splits the reservation out of v1's used. */
    memory->total = d->total;
    memory->reserved = d->reserved;
    memory->free = d->free;
    memory->used = d->used > d->reserved ? d->used - d->reserved : 0;
    END
}
#endif

/* NVML's sizing contract: too small a buffer (or NULL with count 0) gets
 * INSUFFICIENT_SIZE and the needed count; zero processes is SUCCESS with count 0. */
static nvmlReturn_t processes(const char *name, nvmlDevice_t device, unsigned int *count,
                              void *infos, size_t row_size) {
    BEGIN(name, 1)
    int index;
    if (!lookup(cfg, device, &index) || !count) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    unsigned int needed = 0;
    for (unsigned int i = 0; i < cfg->process_count; i++)
        if (cfg->processes[i].device == (unsigned int)index) needed++;
    if (needed > *count || (needed > 0 && !infos)) {
        *count = needed;
        ret = NVML_ERROR_INSUFFICIENT_SIZE;
        goto done;
    }
    unsigned int n = 0;
    for (unsigned int i = 0; i < cfg->process_count; i++) {
        struct fake_process *p = &cfg->processes[i];
        if (p->device != (unsigned int)index) continue;
        if (row_size == sizeof(nvmlProcessInfo_v1_t)) {
            nvmlProcessInfo_v1_t *row = (nvmlProcessInfo_v1_t *)infos + n;
            row->pid = p->pid;
            row->usedGpuMemory = p->used;
        } else {
            nvmlProcessInfo_v2_t *row = (nvmlProcessInfo_v2_t *)infos + n;
            row->pid = p->pid;
            row->usedGpuMemory = p->used;
            row->gpuInstanceId = 0xFFFFFFFFu;
            row->computeInstanceId = 0xFFFFFFFFu;
        }
        n++;
    }
    *count = n;
    END
}

#ifndef NO_V3
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                            unsigned int *count,
                                                            nvmlProcessInfo_v2_t *infos) {
    return processes("nvmlDeviceGetComputeRunningProcesses_v3", device, count, infos,
                     sizeof *infos);
}
#endif

#ifndef NO_V2
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device,
                                                            unsigned int *count,
                                                            nvmlProcessInfo_v2_t *infos) {
    return processes("nvmlDeviceGetComputeRunningProcesses_v2", device, count, infos,
                     sizeof *infos);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device,
                                                         unsigned int *count,
                                                         nvmlProcessInfo_v1_t *infos) {
    return processes("nvmlDeviceGetComputeRunningProcesses", device, count, infos,
                     sizeof *infos);
}

/* Test hooks (not NVML): call counters shared by everyone who loaded this file. */
EXPORT void fake_nvml_stats(unsigned int *inits, unsigned int *shutdowns, unsigned int *calls,
                            int *refcount) {
    *inits = init_calls;
    *shutdowns = shutdown_calls;
    *calls = query_calls;
    *refcount = init_refcount;
}
