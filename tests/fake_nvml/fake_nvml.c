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
 *   uuid <device> <uuid>              (default GPU-00000000-0000-0000-0000-0000000000NN)
 *   pci <device> <bus id>             (default 00000000:NN:00.0, NN = index + 1, hex)
 *   migmode <device> <current> <pending>   (absent: NOT_SUPPORTED, a pre-Ampere GPU)
 *   mig <parent> <gi> <ci> <total> <free> <used> <uuid> <name, rest of line>
 *   migslot m<k> <index>              (its nvmlDeviceGetMigDeviceHandleByIndex index;
 *                                      default: its position among its parent's mig lines)
 *   deverror <device> <function name> <nvml return code>   (only calls on that handle)
 *   cuda_order <device> ...           (the fake libcuda's fastest-first enumeration)
 *   reap                              (drop process rows of PIDs that exited, zombies
 *                                      included, as the driver frees their memory)
 * <device> is an NVML index, or m<k> for the k-th mig line (a MIG device handle, reached
 * through nvmlDeviceGetMigDeviceHandleByIndex of its parent or nvmlDeviceGetHandleByUUID).
 * "self" is getpid() of the calling process; "-" makes nvmlDeviceGetMemoryInfo_v2 return
 * NOT_SUPPORTED; "*" applies to every function but nvmlErrorString and nvmlShutdown.
 *
 * MIG, as nvml.h documents it: a GPU in MIG mode (migmode current 1) refuses the process
 * queries on its own handle with NO_PERMISSION (only a privileged caller gets the
 * aggregate; the fake plays an unprivileged one); its MIG devices answer for themselves,
 * with their GPU/compute instance ids in v2/v3 rows. nvmlDeviceGetMaxMigDeviceCount is
 * SUCCESS with 0 when MIG is unsupported or disabled, 7 when enabled;
 * nvmlDeviceGetMigDeviceHandleByIndex is NOT_FOUND for an empty slot below that count,
 * INVALID_ARGUMENT at or past it, NOT_SUPPORTED on a GPU without MIG support.
 * No config file: nvmlInit returns DRIVER_NOT_LOADED.
 *
 * The same file is also a fake libcuda.so.1 (cuInit, cuDeviceGetCount, cuDeviceGet,
 * cuDeviceGetUuid[_v2]) answering from the cuda_order line; without one, cuInit returns
 * CUDA_ERROR_NO_DEVICE. It ignores CUDA_VISIBLE_DEVICES: its callers ask for every GPU.
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
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
};

#define MAX_DEVICES 16
#define MAX_MIG 16
#define MAX_SLOTS (MAX_DEVICES + MAX_MIG)
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
    char uuid[96];
    char pci[32];
    unsigned int pci_domain, pci_bus, pci_device;
    int has_mig_mode;
    unsigned int mig_current, mig_pending;
    /* MIG devices only (slot >= MAX_DEVICES): */
    unsigned int parent, gi, ci;
    int mig_slot; /* nvmlDeviceGetMigDeviceHandleByIndex index; -1: position */
};

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

struct fake_process { unsigned int device, pid; unsigned long long used; int is_self; };
/* device == -1: any handle. */
struct fake_error { char function[96]; int code; int device; };

struct fake_config {
    int loaded, has_cuda, reap;
    char driver[96];
    int has_driver;
    unsigned int device_count, mig_count;
    /* [0, device_count): GPUs; [MAX_DEVICES, MAX_DEVICES + mig_count): MIG devices. */
    struct fake_device devices[MAX_SLOTS];
    unsigned int cuda_count;
    unsigned int cuda_order[MAX_SLOTS];
    unsigned int process_count;
    struct fake_process processes[MAX_PROCESSES];
    unsigned int error_count;
    struct fake_error errors[MAX_ERRORS];
};

/* Handles must outlive a call, so they point into a table that is never rewritten. */
static struct fake_device handle_table[MAX_SLOTS];
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

/* "3" -> 3, "m2" -> MAX_DEVICES + 2; -1 when malformed. */
static int slot(const char *token) {
    char *end;
    if (token[0] == 'm') {
        long k = strtol(token + 1, &end, 10);
        return (end != token + 1 && k >= 0 && k < MAX_MIG) ? MAX_DEVICES + (int)k : -1;
    }
    long i = strtol(token, &end, 10);
    return (end != token && i >= 0 && i < MAX_DEVICES) ? (int)i : -1;
}

static void set_pci(struct fake_device *d, const char *bus_id) {
    snprintf(d->pci, sizeof d->pci, "%.31s", bus_id);
    sscanf(bus_id, "%x:%x:%x", &d->pci_domain, &d->pci_bus, &d->pci_device);
}

static void defaults(struct fake_device *d, unsigned int index) {
    snprintf(d->uuid, sizeof d->uuid, "GPU-00000000-0000-0000-0000-%012u", index);
    char bus[32];
    snprintf(bus, sizeof bus, "00000000:%02X:00.0", index + 1);
    set_pci(d, bus);
    d->has_mig_mode = 0;
}

static void parse(struct fake_config *cfg, FILE *f) {
    cfg->loaded = 1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char a[96], b[96];
        int s1;
        if (strncmp(line, "uuid ", 5) == 0) {
            if (sscanf(line + 5, "%95s %95s", a, b) == 2 && (s1 = slot(a)) >= 0)
                strcpy(cfg->devices[s1].uuid, b);
            continue;
        }
        if (strncmp(line, "pci ", 4) == 0) {
            if (sscanf(line + 4, "%95s %95s", a, b) == 2 && (s1 = slot(a)) >= 0)
                set_pci(&cfg->devices[s1], b);
            continue;
        }
        if (strncmp(line, "migmode ", 8) == 0) {
            unsigned int cur, pend;
            if (sscanf(line + 8, "%95s %u %u", a, &cur, &pend) == 3 && (s1 = slot(a)) >= 0) {
                cfg->devices[s1].has_mig_mode = 1;
                cfg->devices[s1].mig_current = cur;
                cfg->devices[s1].mig_pending = pend;
            }
            continue;
        }
        if (strncmp(line, "migslot ", 8) == 0) {
            int k;
            if (sscanf(line + 8, "%95s %d", a, &k) == 2 && (s1 = slot(a)) >= MAX_DEVICES)
                cfg->devices[s1].mig_slot = k;
            continue;
        }
        if (strncmp(line, "mig ", 4) == 0 && cfg->mig_count < MAX_MIG) {
            struct fake_device *d = &cfg->devices[MAX_DEVICES + cfg->mig_count];
            unsigned int parent;
            int used_chars = 0;
            memset(d, 0, sizeof *d);
            if (sscanf(line + 4, "%u %u %u %llu %llu %llu %95s %n", &parent, &d->gi, &d->ci,
                       &d->total, &d->free, &d->used, d->uuid, &used_chars) < 7)
                continue;
            d->parent = parent;
            d->mig_slot = -1;
            rest_of_line(d->name, sizeof d->name, line + 4 + used_chars);
            cfg->mig_count++;
            continue;
        }
        if (strncmp(line, "deverror ", 9) == 0 && cfg->error_count < MAX_ERRORS) {
            struct fake_error *e = &cfg->errors[cfg->error_count];
            if (sscanf(line + 9, "%95s %95s %d", a, e->function, &e->code) == 3 &&
                (e->device = slot(a)) >= 0)
                cfg->error_count++;
            continue;
        }
        if (strncmp(line, "cuda_order", 10) == 0) {
            const char *p = line + 10;
            int n;
            cfg->cuda_count = 0;
            while (cfg->cuda_count < MAX_SLOTS && sscanf(p, "%95s%n", a, &n) == 1) {
                if ((s1 = slot(a)) >= 0) cfg->cuda_order[cfg->cuda_count++] = (unsigned int)s1;
                p += n;
            }
            cfg->has_cuda = 1;
            continue;
        }
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
            defaults(d, cfg->device_count);
            d->reserved = d->has_reserved ? strtoull(reserved, NULL, 10) : 0;
            rest_of_line(d->name, sizeof d->name, line + 7 + used_chars);
            cfg->device_count++;
        } else if (strncmp(line, "process ", 8) == 0 && cfg->process_count < MAX_PROCESSES) {
            struct fake_process *p = &cfg->processes[cfg->process_count];
            char pid[32];
            char where[32];
            int at;
            if (sscanf(line + 8, "%31s %31s %llu", where, pid, &p->used) != 3) continue;
            if ((at = slot(where)) < 0) continue;
            p->device = (unsigned int)at;
            p->is_self = strcmp(pid, "self") == 0;
            p->pid = p->is_self ? 0 : (unsigned int)strtoul(pid, NULL, 10);
            cfg->process_count++;
        } else if (strncmp(line, "reap", 4) == 0 && (line[4] == '\n' || line[4] == 0)) {
            cfg->reap = 1;
        } else if (strncmp(line, "error ", 6) == 0 && cfg->error_count < MAX_ERRORS) {
            struct fake_error *e = &cfg->errors[cfg->error_count];
            e->device = -1;
            if (sscanf(line + 6, "%95s %d", e->function, &e->code) == 2) cfg->error_count++;
        }
    }
}

/* Whether `pid` is a running process: it exists and is not a zombie (an exited process
 * its parent has not reaped holds no GPU memory). */
static int process_alive(unsigned int pid) {
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = 0;
    const char *end = strrchr(stat, ')'); /* the name may hold spaces and parentheses */
    return !(end && end[1] == ' ' && end[2] == 'Z');
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
    cfg->loaded = cfg->has_driver = cfg->has_cuda = 0;
    cfg->device_count = cfg->mig_count = cfg->cuda_count = 0;
    cfg->process_count = cfg->error_count = 0;
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
            cache.loaded = cache.has_driver = cache.has_cuda = cache.reap = 0;
            cache.device_count = cache.mig_count = cache.cuda_count = 0;
            cache.process_count = cache.error_count = 0;
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
        cfg->reap = cache.reap;
        cfg->has_driver = cache.has_driver;
        memcpy(cfg->driver, cache.driver, sizeof cfg->driver);
        cfg->device_count = cache.device_count;
        memcpy(cfg->devices, cache.devices, cache.device_count * sizeof cache.devices[0]);
        cfg->mig_count = cache.mig_count;
        memcpy(cfg->devices + MAX_DEVICES, cache.devices + MAX_DEVICES,
               cache.mig_count * sizeof cache.devices[0]);
        cfg->has_cuda = cache.has_cuda;
        cfg->cuda_count = cache.cuda_count;
        memcpy(cfg->cuda_order, cache.cuda_order, sizeof cache.cuda_order);
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
    if (cfg->reap) {
        unsigned int kept = 0;
        for (unsigned int i = 0; i < cfg->process_count; i++) {
            struct fake_process *p = &cfg->processes[i];
            if (process_alive(p->pid)) {
                cfg->processes[kept++] = *p;
                continue;
            }
            struct fake_device *d = &cfg->devices[p->device]; /* its memory is freed */
            unsigned long long gone = p->used < d->used ? p->used : d->used;
            d->used -= gone;
            d->free += gone;
        }
        cfg->process_count = kept;
    }
}

/* Loads the config into *cfg and returns the configured error for `function`, if any. */
static nvmlReturn_t enter(struct fake_config *cfg, const char *function, int needs_init) {
    __sync_fetch_and_add(&query_calls, 1);
    load(cfg);
    for (unsigned int i = 0; i < cfg->error_count; i++) {
        const char *f = cfg->errors[i].function;
        if (cfg->errors[i].device >= 0) continue; /* per-handle: see device_error */
        int wildcard = strcmp(f, "*") == 0 && strcmp(function, "nvmlShutdown") != 0;
        if (wildcard || strcmp(f, function) == 0) return cfg->errors[i].code;
    }
    if (needs_init && init_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    return NVML_SUCCESS;
}

static nvmlReturn_t device_error(struct fake_config *cfg, const char *function, int index) {
    for (unsigned int i = 0; i < cfg->error_count; i++)
        if (cfg->errors[i].device == index && strcmp(cfg->errors[i].function, function) == 0)
            return cfg->errors[i].code;
    return NVML_SUCCESS;
}

static struct fake_config *new_config(void) { return malloc(sizeof(struct fake_config)); }

#define BEGIN(name, needs_init)                                     \
    struct fake_config *cfg = new_config();                         \
    if (!cfg) return NVML_ERROR_INVALID_ARGUMENT;                   \
    const char *fn_name = name;                                     \
    (void)fn_name;                                                  \
    nvmlReturn_t ret = enter(cfg, name, needs_init);                \
    if (ret != NVML_SUCCESS) goto done;
#define END  \
    done:    \
    free(cfg); \
    return ret;

static int slot_exists(struct fake_config *cfg, int index) {
    return (index >= 0 && (unsigned int)index < cfg->device_count) ||
           (index >= MAX_DEVICES && (unsigned int)(index - MAX_DEVICES) < cfg->mig_count);
}

/* The nvmlDeviceGetMigDeviceHandleByIndex index of MIG slot `index` (>= MAX_DEVICES). */
static unsigned int mig_slot_of(struct fake_config *cfg, int index) {
    struct fake_device *d = &cfg->devices[index];
    if (d->mig_slot >= 0) return (unsigned int)d->mig_slot;
    unsigned int k = 0;
    for (int i = MAX_DEVICES; i < index; i++)
        if (cfg->devices[i].parent == d->parent) k++;
    return k;
}

static struct fake_device *lookup(struct fake_config *cfg, nvmlDevice_t device, int *index) {
    if (device < handle_table || device >= handle_table + MAX_SLOTS) return NULL;
    *index = (int)(device - handle_table);
    return slot_exists(cfg, *index) ? &cfg->devices[*index] : NULL;
}

/* A handle's device (INVALID_ARGUMENT when unknown) and its deverror for this function. */
#define LOOKUP                                                                \
    int index;                                                                \
    struct fake_device *d = lookup(cfg, device, &index);                      \
    if (!d) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }                 \
    if ((ret = device_error(cfg, fn_name, index)) != NVML_SUCCESS) goto done;

/* A string out-parameter: the value and its NUL, or INSUFFICIENT_SIZE (nothing written)
 * when `length` cannot hold both. */
static nvmlReturn_t copy_out(char *out, unsigned int length, const char *value) {
    if (strlen(value) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(out, value);
    return NVML_SUCCESS;
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
    ret = copy_out(version, length, cfg->driver);
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

/* A device's string (name, UUID) into the caller's buffer, as nvml.h documents both. */
#define DEVICE_STRING(function, field)                                                   \
    EXPORT nvmlReturn_t function(nvmlDevice_t device, char *out, unsigned int length) { \
        BEGIN(#function, 1)                                                              \
        LOOKUP                                                                           \
        ret = copy_out(out, length, d->field);                                           \
        END                                                                              \
    }

DEVICE_STRING(nvmlDeviceGetName, name)
DEVICE_STRING(nvmlDeviceGetUUID, uuid)

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    BEGIN("nvmlDeviceGetMemoryInfo", 1)
    LOOKUP
    memory->total = d->total;
    memory->free = d->free;
    memory->used = d->used;
    END
}

#ifndef NO_MEMV2
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    BEGIN("nvmlDeviceGetMemoryInfo_v2", 1)
    LOOKUP
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
    if (!count) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    LOOKUP
    /* nvml.h: "In MIG mode, if device handle is provided, the API returns aggregate
     * information, only if the caller has appropriate privileges." */
    if (index < MAX_DEVICES && d->has_mig_mode && d->mig_current == 1) {
        ret = NVML_ERROR_NO_PERMISSION;
        goto done;
    }
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
            /* Rows of a MIG device name its instances; a whole GPU's say "none". */
            row->gpuInstanceId = index >= MAX_DEVICES ? d->gi : 0xFFFFFFFFu;
            row->computeInstanceId = index >= MAX_DEVICES ? d->ci : 0xFFFFFFFFu;
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

/* A full GPU- or MIG- UUID, as NVML takes it (no prefixes). */
EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    BEGIN("nvmlDeviceGetHandleByUUID", 1)
    if (!uuid || !device) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    ret = NVML_ERROR_NOT_FOUND;
    for (int i = 0; i < MAX_SLOTS; i++)
        if (slot_exists(cfg, i) && strcmp(cfg->devices[i].uuid, uuid) == 0) {
            *device = &handle_table[i];
            ret = NVML_SUCCESS;
            break;
        }
    END
}

static nvmlReturn_t pci_info(const char *name, nvmlDevice_t device, nvmlPciInfo_t *pci) {
    BEGIN(name, 1)
    LOOKUP
    /* A MIG device answers with its parent's PCI location. */
    struct fake_device *at = index >= MAX_DEVICES ? &cfg->devices[d->parent] : d;
    memset(pci, 0, sizeof *pci);
    snprintf(pci->busId, sizeof pci->busId, "%s", at->pci);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0",
             at->pci_domain & 0xFFFF, at->pci_bus, at->pci_device);
    pci->domain = at->pci_domain;
    pci->bus = at->pci_bus;
    pci->device = at->pci_device;
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    return pci_info("nvmlDeviceGetPciInfo_v3", device, pci);
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    return pci_info("nvmlDeviceGetPciInfo_v2", device, pci);
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *out) {
    BEGIN("nvmlDeviceGetIndex", 1)
    LOOKUP
    (void)d;
    /* A MIG device's index is its position under its parent. */
    if (index < MAX_DEVICES) {
        *out = (unsigned int)index;
    } else {
        *out = mig_slot_of(cfg, index);
    }
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current,
                                         unsigned int *pending) {
    BEGIN("nvmlDeviceGetMigMode", 1)
    LOOKUP
    if (index >= MAX_DEVICES || !d->has_mig_mode) { ret = NVML_ERROR_NOT_SUPPORTED; goto done; }
    *current = d->mig_current;
    *pending = d->mig_pending;
    END
}

EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *is_mig) {
    BEGIN("nvmlDeviceIsMigDeviceHandle", 1)
    LOOKUP
    (void)d;
    *is_mig = index >= MAX_DEVICES;
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    BEGIN("nvmlDeviceGetMaxMigDeviceCount", 1)
    LOOKUP
    /* nvml.h: "Returns zero if MIG is not supported or enabled." */
    *count = (index < MAX_DEVICES && d->has_mig_mode && d->mig_current == 1) ? 7 : 0;
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int k,
                                                        nvmlDevice_t *mig) {
    BEGIN("nvmlDeviceGetMigDeviceHandleByIndex", 1)
    LOOKUP
    if (index >= MAX_DEVICES || !d->has_mig_mode) { ret = NVML_ERROR_NOT_SUPPORTED; goto done; }
    if (d->mig_current != 1) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    if (k >= 7) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    ret = NVML_ERROR_NOT_FOUND; /* an empty slot: slots need not be dense */
    for (unsigned int i = 0; i < cfg->mig_count; i++) {
        int at = MAX_DEVICES + (int)i;
        if (cfg->devices[at].parent != (unsigned int)index || mig_slot_of(cfg, at) != k) continue;
        *mig = &handle_table[at];
        ret = NVML_SUCCESS;
        break;
    }
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t device,
                                                                 nvmlDevice_t *parent) {
    BEGIN("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", 1)
    LOOKUP
    if (index < MAX_DEVICES) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    *parent = &handle_table[d->parent];
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id) {
    BEGIN("nvmlDeviceGetGpuInstanceId", 1)
    LOOKUP
    if (index < MAX_DEVICES) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    *id = d->gi;
    END
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id) {
    BEGIN("nvmlDeviceGetComputeInstanceId", 1)
    LOOKUP
    if (index < MAX_DEVICES) { ret = NVML_ERROR_INVALID_ARGUMENT; goto done; }
    *id = d->ci;
    END
}

/* ---- the fake libcuda: enough of the driver API to enumerate devices ---- */
enum { CUDA_SUCCESS = 0, CUDA_ERROR_INVALID_VALUE = 1, CUDA_ERROR_NOT_INITIALIZED = 3,
       CUDA_ERROR_NO_DEVICE = 100, CUDA_ERROR_INVALID_DEVICE = 101 };
typedef struct { char bytes[16]; } CUuuid;
static int cuda_initialised;

EXPORT int cuInit(unsigned int flags) {
    (void)flags;
    struct fake_config *cfg = new_config();
    if (!cfg) return CUDA_ERROR_INVALID_VALUE;
    load(cfg);
    int ret = (cfg->has_cuda && cfg->cuda_count > 0) ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
    free(cfg);
    if (ret == CUDA_SUCCESS) cuda_initialised = 1;
    return ret;
}

EXPORT int cuDeviceGetCount(int *count) {
    if (!cuda_initialised) return CUDA_ERROR_NOT_INITIALIZED;
    struct fake_config *cfg = new_config();
    if (!cfg) return CUDA_ERROR_INVALID_VALUE;
    load(cfg);
    *count = (int)cfg->cuda_count;
    free(cfg);
    return CUDA_SUCCESS;
}

EXPORT int cuDeviceGet(int *device, int ordinal) {
    if (!cuda_initialised) return CUDA_ERROR_NOT_INITIALIZED;
    *device = ordinal;
    return CUDA_SUCCESS;
}

static int cuda_uuid(CUuuid *out, int ordinal) {
    if (!cuda_initialised) return CUDA_ERROR_NOT_INITIALIZED;
    struct fake_config *cfg = new_config();
    if (!cfg) return CUDA_ERROR_INVALID_VALUE;
    load(cfg);
    int ret = CUDA_ERROR_INVALID_DEVICE;
    if (ordinal >= 0 && (unsigned int)ordinal < cfg->cuda_count) {
        /* The 16 bytes of the hex digits after the GPU-/MIG- prefix. */
        const char *p = strchr(cfg->devices[cfg->cuda_order[ordinal]].uuid, '-');
        int n = 0;
        memset(out, 0, sizeof *out);
        for (p = p ? p + 1 : ""; *p && n < 32; p++) {
            char c = *p;
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (v < 0) continue;
            out->bytes[n / 2] = (char)(out->bytes[n / 2] | (n % 2 ? v : v << 4));
            n++;
        }
        ret = CUDA_SUCCESS;
    }
    free(cfg);
    return ret;
}

EXPORT int cuGetErrorName(int error, const char **name) {
    switch (error) {
    case CUDA_SUCCESS: *name = "CUDA_SUCCESS"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_VALUE: *name = "CUDA_ERROR_INVALID_VALUE"; return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_INITIALIZED: *name = "CUDA_ERROR_NOT_INITIALIZED"; return CUDA_SUCCESS;
    case CUDA_ERROR_NO_DEVICE: *name = "CUDA_ERROR_NO_DEVICE"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_DEVICE: *name = "CUDA_ERROR_INVALID_DEVICE"; return CUDA_SUCCESS;
    default: *name = NULL; return CUDA_ERROR_INVALID_VALUE;
    }
}

EXPORT int cuDeviceGetUuid(CUuuid *uuid, int device) { return cuda_uuid(uuid, device); }
EXPORT int cuDeviceGetUuid_v2(CUuuid *uuid, int device) { return cuda_uuid(uuid, device); }

/* Test hooks (not NVML): call counters shared by everyone who loaded this file. */
EXPORT void fake_nvml_stats(unsigned int *inits, unsigned int *shutdowns, unsigned int *calls,
                            int *refcount) {
    *inits = init_calls;
    *shutdowns = shutdown_calls;
    *calls = query_calls;
    *refcount = init_refcount;
}
