#define _GNU_SOURCE
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent-protocol.h"
#include "io.h"
#include "process.h"
#include "protocol.h"

enum client_kind { CLIENT_NEW, CLIENT_ATTACH, CLIENT_WAIT, CLIENT_START, CLIENT_SESSION };

#define MAX_CLIENTS 64
#define CLIENT_OUT_MAX (256 * 1024)
#define CHUNK 8192

struct client {
  int fd;
  enum client_kind kind;
  bool want_stdin, in_eof;
  char line[256];
  size_t linelen;
  struct buf out;   /* pending output frames (whole frames only are ever dropped) */
  char *in;         /* pending stdin bytes */
  size_t inlen, inoff;
  struct buf fin;   /* a session client's partial frames */
  uint16_t session; /* a session client's id on the agent channel */
  bool session_done;
};

static void agent_queue(struct monitor *m, int type, uint16_t session, const void *data, size_t len);

static void client_close(struct monitor *m, size_t i) {
  struct client *c = &m->clients[i];
  if (c->kind == CLIENT_SESSION && !c->session_done && m->state != STATE_EXITED)
    agent_queue(m, AF_SIGNAL, c->session, "9", 1); /* the exec's monitor is gone: end its process */
  close(c->fd);
  buf_free(&c->out);
  buf_free(&c->fin);
  free(c->in);
  m->clients[i] = m->clients[--m->nclients];
}

static void reply(struct client *c, const char *s) {
  (void)!write(c->fd, s, strlen(s));
}

/* Sends (or queues) a frame to one attach client; returns -1 when the client is gone. */
static int client_send(struct client *c, int stream, const char *data, size_t len) {
  unsigned char hdr[8];
  frame_header(hdr, stream, (uint32_t)len);
  if (c->out.len == 0) {
    struct iovec iov[2] = {{hdr, 8}, {(void *)data, len}};
    ssize_t w = writev(c->fd, iov, 2);
    if (w < 0 && errno != EAGAIN)
      return -1;
    if (w < 0)
      w = 0;
    if ((size_t)w == len + 8)
      return 0;
    if ((size_t)w < 8) {
      buf_append(&c->out, hdr + w, 8 - (size_t)w);
      buf_append(&c->out, data, len);
    } else {
      buf_append(&c->out, data + (w - 8), len - (size_t)(w - 8));
    }
    return 0;
  }
  if (c->out.len + len + 8 > CLIENT_OUT_MAX)
    return 0; /* a slow client loses whole frames rather than stalling the process */
  buf_append(&c->out, hdr, 8);
  buf_append(&c->out, data, len);
  return 0;
}

static int client_flush(struct client *c) {
  if (c->out.len == 0)
    return 0;
  ssize_t w = write(c->fd, c->out.data, c->out.len);
  if (w < 0)
    return errno == EAGAIN ? 0 : -1;
  memmove(c->out.data, c->out.data + w, c->out.len - (size_t)w);
  c->out.len -= (size_t)w;
  return 0;
}

/* Sends (or queues) raw bytes to a client; returns -1 when the client is gone. */
static int client_raw(struct client *c, const void *data, size_t len) {
  if (c->out.len == 0) {
    ssize_t w = write(c->fd, data, len);
    if (w < 0 && errno != EAGAIN)
      return -1;
    if (w < 0)
      w = 0;
    if ((size_t)w < len)
      buf_append(&c->out, (const char *)data + w, len - (size_t)w);
    return 0;
  }
  buf_append(&c->out, data, len);
  return 0;
}

static void broadcast(struct monitor *m, int stream, const char *data, size_t len) {
  for (size_t i = 0; i < m->nclients;) {
    struct client *c = &m->clients[i];
    if (c->kind == CLIENT_ATTACH && client_send(c, stream, data, len) < 0) {
      client_close(m, i);
      continue;
    }
    i++;
  }
}

/* --- agent mode: frames with the guest agent over the child's stdio (agent-protocol.h) --- */

static long long now_ms(void);

/* How long a VM's agent gets to end its process and power off after a kill before QEMU is killed. */
#define KILL_GRACE_MS 1500

/*
 * A VM whose root disk is thrown away after the exit (--rm: the START payload has "D=1"): once the
 * agent's EXIT is in, nothing in the guest matters, so QEMU is killed at once rather than waiting for
 * the guest to power off.
 */
static bool agent_discards_root(const struct monitor *m) {
  if (m->spec->agent != 1)
    return false;
  const char *p = (const char *)m->spec->agent_start, *end = p + m->spec->agent_start_len;
  while (p < end) {
    size_t n = strnlen(p, (size_t)(end - p));
    if (n == 3 && memcmp(p, "D=1", 3) == 0)
      return true;
    p += n + 1;
  }
  return false;
}

/* Queues a frame whose payload is `data` followed by `more` (the host's clock entry, or nothing). */
static void agent_queue_with(struct monitor *m, int type, uint16_t session, const void *data, size_t len,
                             const void *more, size_t morelen) {
  unsigned char h[AGENT_HEADER];
  agent_header(h, type, session, (uint32_t)(len + morelen));
  buf_append(&m->agent_out, h, AGENT_HEADER);
  buf_append(&m->agent_out, data, len);
  buf_append(&m->agent_out, more, morelen);
}

static void agent_queue(struct monitor *m, int type, uint16_t session, const void *data, size_t len) {
  agent_queue_with(m, type, session, data, len, "", 0);
}

static void agent_flush(struct monitor *m) {
  while (m->agent_out.len > 0) {
    if (m->in_fd < 0) {
      m->agent_out.len = 0;
      return;
    }
    ssize_t w = write(m->in_fd, m->agent_out.data, m->agent_out.len);
    if (w < 0) {
      if (errno != EAGAIN && errno != EINTR)
        m->agent_out.len = 0;
      return;
    }
    memmove(m->agent_out.data, m->agent_out.data + w, m->agent_out.len - (size_t)w);
    m->agent_out.len -= (size_t)w;
  }
}

static void answer_start(struct monitor *m, const char *text) {
  m->start_deadline = 0;
  for (size_t i = 0; i < m->nclients;) {
    struct client *c = &m->clients[i];
    if (c->kind == CLIENT_START) {
      reply(c, text);
      client_close(m, i);
      continue;
    }
    i++;
  }
}

/*
 * Pages the child's mappings of the spec's reclaim files out of it (the kernel image QEMU keeps for a
 * reset). Best effort: an old kernel without process_madvise leaves them.
 */
static void reclaim_mappings(struct monitor *m) {
  char path[64], line[4352];
  snprintf(path, sizeof path, "/proc/%d/maps", m->pid);
  FILE *maps = fopen(path, "re");
  if (!maps)
    return;
  struct iovec ranges[64];
  size_t n = 0;
  while (n < 64 && fgets(line, sizeof line, maps)) {
    unsigned long lo, hi;
    int name = 0;
    if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &name) < 2 || name == 0)
      continue;
    line[strcspn(line, "\n")] = 0;
    for (size_t i = 0; i < m->spec->nreclaim_files; i++)
      if (strcmp(line + name, m->spec->reclaim_files[i]) == 0) {
        ranges[n++] = (struct iovec){(void *)lo, hi - lo};
        break;
      }
  }
  fclose(maps);
  int pidfd = n > 0 ? (int)syscall(SYS_pidfd_open, m->pid, 0) : -1;
  if (pidfd >= 0) {
    (void)syscall(SYS_process_madvise, pidfd, ranges, n, MADV_PAGEOUT, 0);
    close(pidfd);
  }
}

static void agent_frame(struct monitor *m, int type, uint16_t sid, const char *data, size_t len) {
  if (sid != 0) {
    for (size_t i = 0; i < m->nclients; i++) {
      struct client *c = &m->clients[i];
      if (c->kind != CLIENT_SESSION || c->session != sid)
        continue;
      unsigned char h[AGENT_HEADER];
      agent_header(h, type, 0, (uint32_t)len);
      if (type == AF_EXIT)
        c->session_done = true;
      if (client_raw(c, h, AGENT_HEADER) < 0 || client_raw(c, data, len) < 0)
        client_close(m, i);
      break;
    }
    return;
  }
  char text[1100];
  snprintf(text, sizeof text, "%.*s", (int)(len < sizeof text - 1 ? len : sizeof text - 1), data);
  switch (type) {
  case AF_READY:
    if (!m->agent_ready) {
      m->agent_ready = true;
      m->boot_ms = now_ms() - m->spawned_ms;
    }
    break;
  case AF_STDOUT:
  case AF_STDERR: {
    int stream = type == AF_STDOUT ? FRAME_STDOUT : FRAME_STDERR;
    log_write(m->log_fd, stream, data, len);
    broadcast(m, stream, data, len);
    break;
  }
  case AF_STARTED:
    answer_start(m, "ok\n");
    /* later, so that a short process's exit never waits for it */
    if (m->spec->nreclaim_files > 0)
      m->reclaim_at = now_ms() + 500;
    break;
  case AF_ERROR: {
    /* "<step> <errno> <message>": the exit record keeps the message, start's reply all of it */
    const char *msg = text;
    for (int k = 0; k < 2 && strchr(msg, ' '); k++)
      msg = strchr(msg, ' ') + 1;
    snprintf(m->start_error, sizeof m->start_error, "%.1000s", msg);
    struct buf b = {0};
    buf_printf(&b, "error %s\n", text);
    answer_start(m, b.data);
    buf_free(&b);
    break;
  }
  case AF_EXIT:
    if (sscanf(text, "%d %d", &m->guest_code, &m->guest_signal) == 2 && !m->guest_exited) {
      m->guest_exited = true;
      if (m->spec->agent == 2) {
        /* an exec's relay ends when its input does */
        if (m->in_fd >= 0)
          close(m->in_fd);
        m->in_fd = -1;
      }
      long long linger = now_ms() + (agent_discards_root(m) ? 0 : 3000);
      if (!m->kill_at || m->kill_at > linger)
        m->kill_at = linger;
    }
    break;
  default:
    break;
  }
}

/* Takes bytes from the agent and handles every whole frame. */
static void agent_input(struct monitor *m, const char *data, size_t len) {
  buf_append(&m->agent_in, data, len);
  size_t off = 0;
  while (m->agent_in.len - off >= AGENT_HEADER) {
    const unsigned char *h = (const unsigned char *)m->agent_in.data + off;
    uint32_t flen = agent_length(h);
    if (flen > AGENT_MAX_PAYLOAD) {
      fprintf(stderr, "abode-shim: agent frame of %u bytes; dropping the channel's input\n", flen);
      off = m->agent_in.len;
      break;
    }
    if (m->agent_in.len - off < AGENT_HEADER + flen)
      break;
    agent_frame(m, h[0], agent_session(h), (const char *)h + AGENT_HEADER, flen);
    off += AGENT_HEADER + flen;
  }
  memmove(m->agent_in.data, m->agent_in.data + off, m->agent_in.len - off);
  m->agent_in.len -= off;
}

/* A session client's bytes: frames for its session on the agent channel. */
static void session_input(struct monitor *m, struct client *c, const char *data, size_t len) {
  buf_append(&c->fin, data, len);
  size_t off = 0;
  while (c->fin.len - off >= AGENT_HEADER) {
    unsigned char *h = (unsigned char *)c->fin.data + off;
    uint32_t flen = agent_length(h);
    if (flen > AGENT_MAX_PAYLOAD) {
      off = c->fin.len;
      break;
    }
    if (c->fin.len - off < AGENT_HEADER + flen)
      break;
    agent_queue(m, h[0], c->session, h + AGENT_HEADER, flen);
    off += AGENT_HEADER + flen;
  }
  memmove(c->fin.data, c->fin.data + off, c->fin.len - off);
  c->fin.len -= off;
}

/* Reads one chunk of output; returns 0 when the stream is done. */
static int pump_output(struct monitor *m, int *fd, int stream) {
  static char chunk[CHUNK];
  ssize_t r = read(*fd, chunk, sizeof chunk);
  if (r > 0) {
    if (m->spec->agent && stream == FRAME_STDOUT)
      agent_input(m, chunk, (size_t)r);
    else if (m->spec->agent)
      write_all(STDERR_FILENO, chunk, (size_t)r); /* QEMU's own messages: the shim's diagnostics */
    else {
      log_write(m->log_fd, stream, chunk, (size_t)r);
      broadcast(m, stream, chunk, (size_t)r);
    }
    return 1;
  }
  if (r < 0 && (errno == EAGAIN || errno == EINTR))
    return 1;
  if (*fd == m->pty_fd) {
    m->out_hup = true; /* EIO: no slave left; keep the master for resize */
    return 0;
  }
  close(*fd);
  *fd = -1;
  return 0;
}

static void exit_record(struct monitor *m, struct buf *j) {
  int code = 0, sig = 0;
  if (m->guest_exited) {
    code = m->guest_code;
    sig = m->guest_signal;
  } else if (m->spec->agent == 1 && WIFEXITED(m->status)) {
    /* QEMU ended on its own (a SIGTERM to it, a power-off or panic inside) before the guest reported
     * its process's exit: that process did not succeed, whatever QEMU's own code says */
    code = 255;
    if (!m->start_error[0])
      snprintf(m->start_error, sizeof m->start_error,
               "the VM stopped before its process exited (QEMU exited with status %d)", WEXITSTATUS(m->status));
  } else if (WIFEXITED(m->status))
    code = WEXITSTATUS(m->status);
  else if (WIFSIGNALED(m->status)) {
    sig = WTERMSIG(m->status);
    code = 128 + sig;
  }
  char ts[40];
  rfc3339_now(ts, sizeof ts);
  buf_printf(j, "{\"exitCode\":%d,\"signal\":%d,\"finishedAt\":\"%s\"", code, sig, ts);
  if (m->start_error[0]) {
    buf_append(j, ",\"error\":", 9);
    buf_json_string(j, m->start_error);
  }
  buf_append(j, "}", 1);
}

static struct buf exit_json;

static void stdin_flush(struct monitor *m, struct client *c) {
  while (c->inoff < c->inlen) {
    if (m->in_fd < 0) {
      c->inoff = c->inlen;
      break;
    }
    ssize_t w = write(m->in_fd, c->in + c->inoff, c->inlen - c->inoff);
    if (w < 0) {
      if (errno == EAGAIN)
        return;
      if (m->in_fd != m->pty_fd)
        close(m->in_fd);
      m->in_fd = -1;
      c->inoff = c->inlen;
      break;
    }
    c->inoff += (size_t)w;
  }
  c->inoff = c->inlen = 0;
}

static void client_stdin(struct monitor *m, struct client *c, const char *data, size_t len) {
  if (m->spec->agent) {
    if (c->want_stdin && len > 0 && m->state != STATE_EXITED)
      agent_queue(m, AF_STDIN, 0, data, len);
    return;
  }
  if (!c->want_stdin || len == 0 || m->in_fd < 0)
    return;
  if (c->in == NULL && (c->in = malloc(CHUNK)) == NULL)
    return;
  if (len > CHUNK)
    len = CHUNK;
  memcpy(c->in, data, len);
  c->inlen = len;
  c->inoff = 0;
  stdin_flush(m, c);
}

static void client_stdin_eof(struct monitor *m, struct client *c) {
  c->in_eof = true;
  if (m->spec->agent) {
    if (c->want_stdin && !m->spec->terminal && m->state != STATE_EXITED)
      agent_queue(m, AF_STDIN_EOF, 0, "", 0);
    return;
  }
  if (c->want_stdin && m->in_fd >= 0 && m->in_fd != m->pty_fd && c->inoff >= c->inlen) {
    close(m->in_fd);
    m->in_fd = -1;
  }
}

/* The agent's time to say READY, and then to start the process (spec, default 30 s). */
static unsigned boot_timeout_ms(const struct monitor *m) {
  return m->spec->boot_timeout_ms ? m->spec->boot_timeout_ms : 30000;
}

/* True once `*at` (ms; 0 none) has come, which clears it; until then lowers *timeout to wake for it. */
static bool due(long long *at, int *timeout) {
  if (!*at)
    return false;
  long long left = *at - now_ms();
  if (left <= 0) {
    *at = 0;
    return true;
  }
  if (*timeout < 0 || left < *timeout)
    *timeout = (int)left;
  return false;
}

/* "C=<seconds>.<nanoseconds>" of the host's clock (NUL included); its length. */
static int clock_entry(char *out, size_t size) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return snprintf(out, size, "C=%lld.%09ld", (long long)now.tv_sec, now.tv_nsec) + 1;
}

void monitor_agent_start(struct monitor *m) {
  /* The main process's START carries the host's clock: a restored guest's stands where its template's
   * snapshot left it. An exec's does not: the guest's clock is set once, not stepped at every exec. */
  char clock[48];
  size_t clen = m->spec->agent == 1 ? (size_t)clock_entry(clock, sizeof clock) : 0;
  agent_queue_with(m, AF_START, 0, m->spec->agent_start, m->spec->agent_start_len, clock, clen);
  agent_flush(m);
  m->state = STATE_RUNNING;
  /* READY comes before the guest's root disk is mounted: the rest of the boot gets the same time */
  if (m->spec->agent == 1)
    m->start_deadline = now_ms() + boot_timeout_ms(m);
}

/* Returns 1 when the client waits for its reply (agent mode: until STARTED or ERROR). */
static int do_start(struct monitor *m, struct client *c) {
  if (m->state != STATE_CREATED) {
    reply(c, m->state == STATE_RUNNING ? "error process already started\n" : "error process has exited\n");
    return 0;
  }
  if (m->spec->agent) {
    monitor_agent_start(m);
    c->kind = CLIENT_START;
    return 1;
  }
  if (write(m->sync_fd, "s", 1) != 1) {
    reply(c, "error process is gone\n");
    return 0;
  }
  m->state = STATE_RUNNING;
  struct sync_msg msg;
  int fd, r;
  while ((r = sync_recv(m->sync_fd, &msg, &fd)) == 1) {
    if (fd >= 0)
      close(fd);
    if (msg.kind == SYNC_EXEC_FAILED || msg.kind == SYNC_ERROR) {
      snprintf(m->start_error, sizeof m->start_error, "%s", msg.err.message);
      break;
    }
  }
  close(m->sync_fd);
  m->sync_fd = -1;
  if (m->start_error[0]) {
    struct buf b = {0};
    buf_printf(&b, "error %s\n", m->start_error);
    reply(c, b.data);
    buf_free(&b);
  } else {
    reply(c, "ok\n");
  }
  return 0;
}

/* Handles a client's first line; returns 1 when the connection stays open. */
static int dispatch(struct monitor *m, struct client *c, const char *extra, size_t extralen) {
  char *line = c->line;
  int a, b;
  if (strncmp(line, "attach ", 7) == 0 || strcmp(line, "attach") == 0) {
    c->kind = CLIENT_ATTACH;
    c->want_stdin = line[6] == ' ' && line[7] == '1';
    if (m->state == STATE_EXITED)
      return 0;
    client_stdin(m, c, extra, extralen);
    return 1;
  }
  if (strcmp(line, "start") == 0) {
    return do_start(m, c);
  } else if (strcmp(line, "session") == 0 && m->spec->agent == 1) {
    c->kind = CLIENT_SESSION;
    c->session = ++m->next_session ? m->next_session : ++m->next_session;
    unsigned char h[AGENT_HEADER];
    agent_header(h, AF_READY, 0, 0);
    client_raw(c, h, AGENT_HEADER);
    if (extralen)
      session_input(m, c, extra, extralen);
    return 1;
  } else if (sscanf(line, "signal %d", &a) == 1) {
    char num[16];
    int nlen = snprintf(num, sizeof num, "%d", a);
    if (m->state == STATE_EXITED)
      reply(c, "error process has exited\n");
    else if (m->spec->agent == 1 && a == SIGKILL && m->state == STATE_RUNNING && !m->guest_exited &&
             !agent_discards_root(m)) {
      /* A VM's kill: the agent kills the process, syncs and powers off; QEMU is killed after a grace. */
      agent_queue(m, AF_SIGNAL, 0, num, (size_t)nlen);
      long long grace = now_ms() + KILL_GRACE_MS;
      if (!m->kill_at || m->kill_at > grace)
        m->kill_at = grace;
      reply(c, "ok\n");
    } else if (m->spec->agent && !(m->spec->agent == 1 && a == SIGKILL)) {
      agent_queue(m, AF_SIGNAL, 0, num, (size_t)nlen);
      reply(c, "ok\n");
    } else if (kill(m->pid, a) < 0) {
      char msg[128];
      snprintf(msg, sizeof msg, "error kill: %s\n", strerror(errno));
      reply(c, msg);
    } else
      reply(c, "ok\n");
  } else if (sscanf(line, "resize %d %d", &a, &b) == 2) {
    struct winsize ws = {.ws_row = (unsigned short)a, .ws_col = (unsigned short)b};
    char text[32];
    int tlen = snprintf(text, sizeof text, "%d %d", a, b);
    if (m->spec->agent) {
      agent_queue(m, AF_RESIZE, 0, text, (size_t)tlen);
      reply(c, "ok\n");
    } else if (m->pty_fd < 0)
      reply(c, "error no terminal\n");
    else if (ioctl(m->pty_fd, TIOCSWINSZ, &ws) < 0)
      reply(c, "error resize failed\n");
    else
      reply(c, "ok\n");
  } else if (strcmp(line, "wait") == 0) {
    c->kind = CLIENT_WAIT;
    return 1;
  } else if (strcmp(line, "state") == 0) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s %d\n", m->state == STATE_CREATED ? "created" : "running", m->pid);
    reply(c, msg);
  } else {
    reply(c, "error unknown request\n");
  }
  return 0;
}

static void client_readable(struct monitor *m, size_t i) {
  struct client *c = &m->clients[i];
  char buf[CHUNK];
  if (c->kind == CLIENT_NEW) {
    ssize_t r = read(c->fd, c->line + c->linelen, sizeof c->line - 1 - c->linelen);
    if (r <= 0) {
      if (r < 0 && errno == EAGAIN)
        return;
      client_close(m, i);
      return;
    }
    c->linelen += (size_t)r;
    c->line[c->linelen] = 0;
    char *nl = memchr(c->line, '\n', c->linelen);
    if (nl == NULL) {
      if (c->linelen >= sizeof c->line - 1) {
        reply(c, "error request too long\n");
        client_close(m, i);
      }
      return;
    }
    *nl = 0;
    size_t extra = c->linelen - (size_t)(nl + 1 - c->line);
    memcpy(buf, nl + 1, extra);
    if (!dispatch(m, c, buf, extra) && m->state != STATE_EXITED)
      client_close(m, i);
    return;
  }
  ssize_t r = read(c->fd, buf, sizeof buf);
  if (r < 0 && errno == EAGAIN)
    return;
  if (c->kind == CLIENT_SESSION) {
    if (r <= 0)
      client_close(m, i);
    else
      session_input(m, c, buf, (size_t)r);
    return;
  }
  if (c->kind == CLIENT_WAIT || c->kind == CLIENT_START) {
    if (r <= 0)
      client_close(m, i);
    return;
  }
  if (r == 0) {
    if (c->in_eof) {
      client_close(m, i); /* fully closed after a half-close */
      return;
    }
    client_stdin_eof(m, c);
    return;
  }
  if (r < 0) {
    client_close(m, i);
    return;
  }
  client_stdin(m, c, buf, (size_t)r);
}

static void accept_client(struct monitor *m) {
  int fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0)
    return;
  if (m->nclients >= MAX_CLIENTS) {
    (void)!write(fd, "error too many clients\n", 23);
    close(fd);
    return;
  }
  struct client *c = &m->clients[m->nclients++];
  memset(c, 0, sizeof *c);
  c->fd = fd;
}

static void reap(struct monitor *m) {
  int status;
  pid_t p;
  while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
    if (p == m->pid) {
      m->status = status;
      m->have_status = true;
    }
  }
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A request that arrives while the shim is finishing: read its line (briefly) and classify it. */
static void late_request(struct client *c) {
  long long deadline = now_ms() + 200;
  while (!memchr(c->line, '\n', c->linelen) && c->linelen < sizeof c->line - 1) {
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    long long left = deadline - now_ms();
    if (left <= 0 || poll(&p, 1, (int)left) <= 0)
      break;
    ssize_t r = read(c->fd, c->line + c->linelen, sizeof c->line - 1 - c->linelen);
    if (r <= 0)
      break;
    c->linelen += (size_t)r;
  }
  c->line[c->linelen] = 0;
  if (strncmp(c->line, "attach", 6) == 0) {
    c->kind = CLIENT_ATTACH;
  } else if (strncmp(c->line, "wait", 4) == 0) {
    c->kind = CLIENT_WAIT;
  } else if (strncmp(c->line, "state", 5) == 0) {
    buf_printf(&c->out, "exited %s\n", exit_json.data);
  } else {
    buf_printf(&c->out, "error process has exited\n");
  }
}

/* After the exit: drain output, write the exit record, answer waiters and attach clients, go. */
static _Noreturn void finish(struct monitor *m) {
  long long deadline = now_ms() + 1000;
  while (1) {
    struct pollfd p[2];
    int n = 0;
    if (m->out_fd >= 0 && !m->out_hup)
      p[n++] = (struct pollfd){.fd = m->out_fd, .events = POLLIN};
    if (m->err_fd >= 0)
      p[n++] = (struct pollfd){.fd = m->err_fd, .events = POLLIN};
    long long left = deadline - now_ms();
    if (n == 0 || left <= 0)
      break;
    if (poll(p, (nfds_t)n, (int)left) <= 0)
      break;
    for (int i = 0; i < n; i++) {
      if (!p[i].revents)
        continue;
      if (p[i].fd == m->out_fd)
        pump_output(m, &m->out_fd, FRAME_STDOUT);
      else
        pump_output(m, &m->err_fd, FRAME_STDERR);
    }
  }
  m->state = STATE_EXITED;
  exit_record(m, &exit_json);
  if (m->spec->exit_path[0]) {
    struct buf tmp = {0};
    buf_printf(&tmp, "%s.tmp", m->spec->exit_path);
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      write_all(fd, exit_json.data, exit_json.len);
      write_all(fd, "\n", 1);
      fsync(fd);
      close(fd);
      if (rename(tmp.data, m->spec->exit_path) < 0)
        fprintf(stderr, "abode-shim: rename %s: %s\n", tmp.data, strerror(errno));
    } else {
      fprintf(stderr, "abode-shim: write %s: %s\n", tmp.data, strerror(errno));
    }
    buf_free(&tmp);
  }
  /* No new connections; those already queued are answered with the exit below. */
  if (m->spec->socket_path[0])
    unlink(m->spec->socket_path);
  while (m->nclients < MAX_CLIENTS) {
    int fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      break;
    struct client *c = &m->clients[m->nclients++];
    memset(c, 0, sizeof *c);
    c->fd = fd;
  }
  for (size_t i = 0; i < m->nclients; i++) {
    struct client *c = &m->clients[i];
    if (c->kind == CLIENT_NEW)
      late_request(c);
    if (c->kind == CLIENT_START) {
      buf_printf(&c->out, "error %s\n",
                 m->start_error[0] ? m->start_error : "the instance exited before its process started");
    } else if (c->kind == CLIENT_WAIT) {
      struct buf b = {0};
      buf_printf(&b, "exit %s\n", exit_json.data);
      buf_append(&c->out, b.data, b.len);
      buf_free(&b);
    } else if (c->kind == CLIENT_ATTACH) {
      unsigned char hdr[8];
      frame_header(hdr, FRAME_EXIT, (uint32_t)exit_json.len);
      buf_append(&c->out, hdr, 8);
      buf_append(&c->out, exit_json.data, exit_json.len);
    }
  }
  /* Flush what the clients still have queued, for at most a second. */
  deadline = now_ms() + 1000;
  while (1) {
    struct pollfd p[MAX_CLIENTS];
    size_t idx[MAX_CLIENTS];
    nfds_t n = 0;
    for (size_t i = 0; i < m->nclients; i++)
      if (m->clients[i].out.len) {
        p[n] = (struct pollfd){.fd = m->clients[i].fd, .events = POLLOUT};
        idx[n++] = i;
      }
    long long left = deadline - now_ms();
    if (n == 0 || left <= 0 || poll(p, n, (int)left) <= 0)
      break;
    for (nfds_t k = 0; k < n; k++)
      if (p[k].revents) {
        struct client *c = &m->clients[idx[k]];
        if (client_flush(c) < 0 || (p[k].revents & (POLLERR | POLLHUP)))
          c->out.len = 0;
      }
  }
  _exit(0);
}

_Noreturn void monitor_run(struct monitor *m) {
  struct client clients[MAX_CLIENTS];
  m->clients = clients;
  m->nclients = 0;
  while (1) {
    reap(m);
    if (m->have_status)
      finish(m);
    struct pollfd p[4 + MAX_CLIENTS];
    nfds_t n = 0;
    p[n++] = (struct pollfd){.fd = m->sig_fd, .events = POLLIN};
    p[n++] = (struct pollfd){.fd = m->listen_fd, .events = POLLIN};
    p[n++] = (struct pollfd){.fd = (m->out_fd >= 0 && !m->out_hup) ? m->out_fd : -1, .events = POLLIN};
    p[n++] = (struct pollfd){.fd = m->err_fd, .events = POLLIN};
    bool stdin_pending = false;
    for (size_t i = 0; i < m->nclients; i++) {
      struct client *c = &m->clients[i];
      short ev = 0;
      if (c->inoff < c->inlen)
        stdin_pending = true;
      else if (!c->in_eof)
        ev |= POLLIN;
      if (c->out.len)
        ev |= POLLOUT;
      p[n++] = (struct pollfd){.fd = c->fd, .events = ev};
    }
    /* The stdin fd is polled through the client loop below: when a write would block, retry on POLLOUT. */
    bool to_agent = m->spec->agent && m->agent_out.len > 0;
    struct pollfd inp = {.fd = (stdin_pending || to_agent) ? m->in_fd : -1, .events = POLLOUT};
    p[n] = inp;
    int timeout = -1;
    if (due(&m->reclaim_at, &timeout) && !m->guest_exited)
      reclaim_mappings(m);
    if (due(&m->start_deadline, &timeout)) {
      snprintf(m->start_error, sizeof m->start_error, "the VM did not start its process within %u ms",
               boot_timeout_ms(m));
      char text[sizeof m->start_error + 32];
      snprintf(text, sizeof text, "error boot %d %s\n", ETIMEDOUT, m->start_error);
      answer_start(m, text);
      kill(m->pid, SIGKILL);
    }
    if (due(&m->kill_at, &timeout))
      kill(m->pid, SIGKILL); /* the guest has exited but QEMU lingers */
    int r = poll(p, n + 1, timeout);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      fprintf(stderr, "abode-shim: poll: %s\n", strerror(errno));
      _exit(1);
    }
    if (p[0].revents) {
      struct signalfd_siginfo si;
      while (read(m->sig_fd, &si, sizeof si) == sizeof si) {
      }
    }
    if (p[2].revents)
      pump_output(m, &m->out_fd, FRAME_STDOUT);
    if (p[3].revents)
      pump_output(m, &m->err_fd, FRAME_STDERR);
    if (p[n].revents && m->spec->agent) {
      agent_flush(m);
    } else if (p[n].revents) {
      for (size_t i = 0; i < m->nclients; i++) {
        struct client *c = &m->clients[i];
        if (c->inoff < c->inlen) {
          stdin_flush(m, c);
          if (c->in_eof)
            client_stdin_eof(m, c);
        }
      }
    }
    /* Clients: walk backwards by fd so closing (which moves the last entry) is safe. */
    size_t nc = m->nclients;
    int fds[MAX_CLIENTS];
    short rev[MAX_CLIENTS];
    for (size_t i = 0; i < nc; i++) {
      fds[i] = (int)p[4 + i].fd;
      rev[i] = p[4 + i].revents;
    }
    for (size_t k = 0; k < nc; k++) {
      if (!rev[k])
        continue;
      size_t i;
      for (i = 0; i < m->nclients && m->clients[i].fd != fds[k]; i++) {
      }
      if (i == m->nclients)
        continue;
      if (rev[k] & POLLOUT) {
        if (client_flush(&m->clients[i]) < 0) {
          client_close(m, i);
          continue;
        }
      }
      if (rev[k] & (POLLIN | POLLHUP | POLLERR))
        client_readable(m, i);
    }
    if (p[1].revents & POLLIN)
      accept_client(m);
    if (m->spec->agent)
      agent_flush(m);
  }
}

int monitor_agent_boot(struct monitor *m, struct error *err) {
  m->spawned_ms = now_ms();
  if (m->spec->agent_resume) {
    /* 64 random bytes, then the clock (the restored guest mounts its disk before START comes) */
    unsigned char seed[64];
    char clock[48];
    if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed)
      return fail(err, errno, "boot", "", "no randomness for the restored VM");
    size_t clen = (size_t)clock_entry(clock, sizeof clock);
    agent_queue_with(m, AF_RESUME, 0, seed, sizeof seed, clock, clen);
    agent_flush(m);
  }
  long long deadline = m->spawned_ms + boot_timeout_ms(m);
  while (!m->agent_ready) {
    int status;
    if (waitpid(m->pid, &status, WNOHANG) == m->pid) {
      m->pid = 0;
      return fail(err, 0, "boot", m->spec->args[0], "%s exited during boot (%s %d)", m->spec->args[0],
                  WIFSIGNALED(status) ? "signal" : "status",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
    long long left = deadline - now_ms();
    if (left <= 0) {
      kill(m->pid, SIGKILL);
      waitpid(m->pid, NULL, 0);
      m->pid = 0;
      return fail(err, ETIMEDOUT, "boot", "", "the VM's agent did not answer within %u ms",
                  boot_timeout_ms(m));
    }
    struct pollfd p[3] = {{.fd = m->out_fd, .events = POLLIN},
                          {.fd = m->err_fd, .events = POLLIN},
                          {.fd = m->sig_fd, .events = POLLIN}};
    if (poll(p, 3, (int)(left < 50 ? left : 50)) < 0 && errno != EINTR)
      return fail(err, errno, "boot", "", "poll");
    if (p[0].revents)
      pump_output(m, &m->out_fd, FRAME_STDOUT);
    if (p[1].revents)
      pump_output(m, &m->err_fd, FRAME_STDERR);
    if (p[2].revents) {
      struct signalfd_siginfo si;
      while (read(m->sig_fd, &si, sizeof si) == sizeof si) {
      }
    }
    if (m->out_fd < 0 && !m->agent_ready) {
      kill(m->pid, SIGKILL);
      waitpid(m->pid, NULL, 0);
      m->pid = 0;
      return fail(err, EPIPE, "boot", "", "the agent channel closed during boot");
    }
  }
  return 0;
}
