#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int fail(struct error *err, int errnum, const char *step, const char *path, const char *fmt, ...) {
  va_list ap;
  err->errnum = errnum;
  snprintf(err->step, sizeof err->step, "%s", step);
  snprintf(err->path, sizeof err->path, "%s", path ? path : "");
  va_start(ap, fmt);
  int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  if (errnum != 0 && n >= 0 && (size_t)n < sizeof err->message)
    snprintf(err->message + n, sizeof err->message - n, ": %s", strerror(errnum));
  return -1;
}

ssize_t write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  size_t done = 0;
  while (done < len) {
    ssize_t w = write(fd, p + done, len - done);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    done += (size_t)w;
  }
  return (ssize_t)done;
}

int read_file(const char *path, size_t max, char **out, size_t *len, struct error *err) {
  cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail(err, errno, "spec", path, "open %s", path);
  struct stat st;
  if (fstat(fd, &st) < 0)
    return fail(err, errno, "spec", path, "stat %s", path);
  if ((size_t)st.st_size > max)
    return fail(err, EFBIG, "spec", path, "read %s", path);
  char *data = malloc((size_t)st.st_size + 1);
  if (data == NULL)
    return fail(err, ENOMEM, "spec", path, "read %s", path);
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      int e = r < 0 ? errno : EIO;
      free(data);
      return fail(err, e, "spec", path, "read %s", path);
    }
    got += (size_t)r;
  }
  data[got] = 0;
  *out = data;
  *len = got;
  return 0;
}

int write_file(const char *path, const char *s, struct error *err) {
  cleanup_fd int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return fail(err, errno, "write", path, "open %s", path);
  if (write_all(fd, s, strlen(s)) < 0)
    return fail(err, errno, "write", path, "write %s", path);
  return 0;
}

void buf_append(struct buf *b, const void *data, size_t len) {
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + len + 1)
      cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL)
      abort();
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = 0;
}

void buf_printf(struct buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof tmp) {
    buf_append(b, tmp, (size_t)n);
    return;
  }
  char *big = malloc((size_t)n + 1);
  if (big == NULL)
    abort();
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  buf_append(b, big, (size_t)n);
  free(big);
}

void buf_json_string(struct buf *b, const char *s) {
  buf_append(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"':
      buf_append(b, "\\\"", 2);
      break;
    case '\\':
      buf_append(b, "\\\\", 2);
      break;
    case '\n':
      buf_append(b, "\\n", 2);
      break;
    case '\r':
      buf_append(b, "\\r", 2);
      break;
    case '\t':
      buf_append(b, "\\t", 2);
      break;
    default:
      if (*p < 0x20)
        buf_printf(b, "\\u%04x", *p);
      else
        buf_append(b, p, 1);
    }
  }
  buf_append(b, "\"", 1);
}

void buf_free(struct buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void rfc3339_now(char *out, size_t n) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
}
