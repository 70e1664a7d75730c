/* Small helpers shared by the shim: errors, cleanup attributes, I/O, JSON. */
#ifndef ABODE_UTIL_H
#define ABODE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A structured error: the step that failed, its errno and the path involved. */
struct error {
  int errnum;
  char step[32];
  char path[512];
  char message[1024];
};

/* Fills err (message "<fmt>: strerror(errnum)" when errnum != 0) and returns -1. */
int fail(struct error *err, int errnum, const char *step, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static inline void cleanup_fd_fn(int *fd) {
  extern int close(int);
  if (*fd >= 0)
    close(*fd);
}
static inline void cleanup_free_fn(void *p) {
  extern void free(void *);
  free(*(void **)p);
}
#define cleanup_fd __attribute__((cleanup(cleanup_fd_fn)))
#define cleanup_free __attribute__((cleanup(cleanup_free_fn)))

/* Returns the fd and sets *out to -1, so a cleanup_fd variable can hand it on. */
static inline int steal_fd(int *fd) {
  int r = *fd;
  *fd = -1;
  return r;
}

ssize_t write_all(int fd, const void *buf, size_t len);
/* Reads a whole file (at most max bytes) into a malloc'd buffer. */
int read_file(const char *path, size_t max, char **out, size_t *len, struct error *err);
/* Writes a string to an existing file (e.g. cgroup.procs, oom_score_adj). */
int write_file(const char *path, const char *s, struct error *err);

/* A growable string buffer for JSON and replies. */
struct buf {
  char *data;
  size_t len, cap;
};
void buf_append(struct buf *b, const void *data, size_t len);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_json_string(struct buf *b, const char *s);
void buf_free(struct buf *b);

/* "2026-12-01T11:00:00.123456789Z" into out (at least 32 bytes). */
void rfc3339_now(char *out, size_t n);

#endif
