/* Counts a process's heap allocations, for bench/profile.sh ("allocations
 * per job"). Built there with `cc -O2 -shared -fPIC` and loaded with
 * LD_PRELOAD into the supervisor, which hands the variable on to its
 * workers, so every process of a run is counted; a bench-only tool, never
 * part of the project's binaries.
 *
 * Why this way: Rust's default allocator (which the project keeps) calls
 * malloc/calloc/realloc/posix_memalign of glibc, so interposing those
 * counts every Rust allocation without a special build; heaptrack or
 * valgrind would follow one process only and slow it 10-50x, which changes
 * how the loop batches its work. The counters are relaxed atomics (one
 * add each); the timing runs of profile.sh run without this library.
 *
 * At exit (normal exit or return from main: the supervisor and, at the end
 * of their stdin, the http-workers) each process appends one line to the
 * file named by ALLOC_COUNT_FILE:
 *   <pid> <comm> <new blocks> <of which calloc> <reallocs> <frees>
 * A process killed by a signal writes nothing: profile.sh counts the lines.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static unsigned long n_new, n_calloc, n_realloc, n_free;

#define COUNT(c) __atomic_fetch_add(&(c), 1, __ATOMIC_RELAXED)

void *malloc(size_t size) {
    COUNT(n_new);
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
    COUNT(n_new);
    COUNT(n_calloc);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size) {
    if (p == NULL) {
        COUNT(n_new);
    } else {
        COUNT(n_realloc);
    }
    return __libc_realloc(p, size);
}

void free(void *p) {
    if (p != NULL) {
        COUNT(n_free);
    }
    __libc_free(p);
}

void *memalign(size_t align, size_t size) {
    COUNT(n_new);
    return __libc_memalign(align, size);
}

void *aligned_alloc(size_t align, size_t size) {
    COUNT(n_new);
    return __libc_memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size) {
    if (align % sizeof(void *) != 0 || (align & (align - 1)) != 0) {
        return EINVAL;
    }
    COUNT(n_new);
    void *p = __libc_memalign(align, size);
    if (p == NULL) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("ALLOC_COUNT_FILE");
    if (path == NULL) {
        return;
    }
    char comm[64] = "?";
    int cf = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (cf >= 0) {
        ssize_t k = read(cf, comm, sizeof comm - 1);
        close(cf);
        if (k > 0) {
            comm[k] = 0;
            comm[strcspn(comm, "\n")] = 0;
        }
    }
    char line[256];
    int len = snprintf(line, sizeof line, "%d %s %lu %lu %lu %lu\n", (int)getpid(), comm,
                       __atomic_load_n(&n_new, __ATOMIC_RELAXED),
                       __atomic_load_n(&n_calloc, __ATOMIC_RELAXED),
                       __atomic_load_n(&n_realloc, __ATOMIC_RELAXED),
                       __atomic_load_n(&n_free, __ATOMIC_RELAXED));
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0 && len > 0) {
        /* One write: lines of processes ending together never mix. */
        ssize_t w = write(fd, line, (size_t)len);
        (void)w;
        close(fd);
    }
}
