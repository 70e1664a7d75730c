#define _GNU_SOURCE
#include "io.h"

#include <string.h>

#include "protocol.h"
#include "util.h"

void log_write(int logfd, int stream, const char *data, size_t len) {
  if (logfd < 0 || len == 0)
    return;
  char ts[40];
  rfc3339_now(ts, sizeof ts);
  const char *name = stream == FRAME_STDERR ? "stderr" : "stdout";
  struct buf b = {0};
  size_t off = 0;
  while (off < len) {
    const char *nl = memchr(data + off, '\n', len - off);
    size_t end = nl ? (size_t)(nl - data) : len;
    buf_printf(&b, "%s %s %c ", ts, name, nl ? 'F' : 'P');
    buf_append(&b, data + off, end - off);
    buf_append(&b, "\n", 1);
    off = nl ? end + 1 : len;
  }
  write_all(logfd, b.data, b.len);
  buf_free(&b);
}

void frame_header(unsigned char out[8], int stream, uint32_t len) {
  out[0] = (unsigned char)stream;
  out[1] = out[2] = out[3] = 0;
  out[4] = (unsigned char)(len >> 24);
  out[5] = (unsigned char)(len >> 16);
  out[6] = (unsigned char)(len >> 8);
  out[7] = (unsigned char)len;
}
