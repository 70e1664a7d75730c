/*
 * abode-agent: PID 1 of an abode microVM. Boots (boot.c), says READY on the agent port, mounts the
 * root disk, then runs sessions (session.c) as the host asks (agent-protocol.h) and powers the
 * machine off when session 0's process has ended. The ACPI power button (QMP system_powerdown)
 * asks that process to stop (SIGTERM).
 */
#define _GNU_SOURCE
#include "agent.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int port = -1;
struct module_set virtiofs_modules;

void send_frame(int type, uint16_t session, const void *data, size_t len) {
  unsigned char h[AGENT_HEADER];
  agent_header(h, type, session, (uint32_t)len);
  struct iovec iov[2] = {{h, AGENT_HEADER}, {(void *)data, len}};
  size_t total = AGENT_HEADER + len;
  while (total > 0) {
    ssize_t w = writev(port, iov, 2);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      logf_console("write to the host: %s", strerror(errno));
      return;
    }
    total -= (size_t)w;
    for (int i = 0; i < 2 && w > 0; i++) {
      size_t take = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
      iov[i].iov_base = (char *)iov[i].iov_base + take;
      iov[i].iov_len -= take;
      w -= (ssize_t)take;
    }
  }
}

/*
 * Ends the machine. A kept root disk is made clean first: remounting it read-only syncs it (one flush
 * to the host); if a killed process still holds a file open for writing, the remount fails and sync()
 * does the flushing. A disk the host throws away (--rm) needs none of that: the shim has the EXIT and
 * ends QEMU itself, and this is the fallback.
 */
static _Noreturn void power_off(void) {
  if (!discard_root) {
    kill(-1, SIGKILL);
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
      sync();
  }
  reboot(RB_POWER_OFF);
  reboot(RB_AUTOBOOT); /* -no-reboot makes QEMU exit on a reset too */
  for (;;)
    pause();
}

static char root_error[512];
static unsigned char inbuf[AGENT_HEADER + AGENT_MAX_PAYLOAD];
static size_t inlen;
static bool resumed;

static void handle_frame(int type, uint16_t id, const char *data, size_t len) {
  if (type == AF_RESUME) {
    boot_resume(data, len);
    resumed = true;
    return;
  }
  if (type == AF_START) {
    session_start(id, data, len, root_error);
    if (id == 0 && !session_find(0))
      power_off(); /* the main process could not start: ERROR and EXIT are sent */
    return;
  }
  struct session *s = session_find(id);
  if (s)
    session_input(s, type, data, len);
}

/* Reads from the port and handles every whole frame; returns -1 when the host has gone. */
static int read_port(void) {
  ssize_t r = read(port, inbuf + inlen, sizeof inbuf - inlen);
  if (r < 0)
    return errno == EINTR || errno == EAGAIN ? 0 : -1;
  if (r == 0)
    return 0; /* no host connected: virtio-serial reports 0; keep waiting */
  inlen += (size_t)r;
  size_t off = 0;
  while (inlen - off >= AGENT_HEADER) {
    uint32_t len = agent_length(inbuf + off);
    if (len > AGENT_MAX_PAYLOAD) {
      logf_console("frame of %u bytes: dropping the channel buffer", len);
      inlen = off = 0;
      break;
    }
    if (inlen - off < AGENT_HEADER + len)
      break;
    handle_frame(inbuf[off], agent_session(inbuf + off), (const char *)inbuf + off + AGENT_HEADER, len);
    off += AGENT_HEADER + len;
  }
  memmove(inbuf, inbuf + off, inlen - off);
  inlen -= off;
  return 0;
}

/* Handles what the port's poll said: frames to read, or no host connected yet (a short wait). */
static void pump_port(short revents) {
  if (revents & POLLIN)
    read_port();
  else if (revents & (POLLHUP | POLLERR))
    nanosleep(&(struct timespec){0, 10000000}, NULL);
}

/* The child that loads the late modules (the power button among them), and how long after it is done
 * the button's device is looked for (0: not yet). */
static pid_t late_loader;
static long long power_search_until;

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == late_loader)
      power_search_until = monotonic_ms() + 5000;
    for (size_t i = 0; i < MAX_SESSIONS; i++) {
      struct session *s = &sessions[i];
      if (s->used && s->pid == pid && !s->exited) {
        s->exited = true;
        s->exited_at = monotonic_ms();
        if (s->status >= 0)
          s->status = status;
      }
    }
  }
}

int main(void) {
  if (getpid() != 1) {
    fprintf(stderr, "abode-agent runs as PID 1 of an abode microVM\n");
    return 2;
  }
  boot_mounts();
  boot_modules("/modules");
  struct module_set root, late;
  boot_open_modules("/modules.root", &root);
  boot_open_modules("/modules.late", &late);
  boot_open_modules("/modules.virtiofs", &virtiofs_modules);
  /* A template's copies each get their own disk: the root waits for RESUME, the balloon does not. */
  bool template = boot_is_template();
  int root_fd = -1;
  if (template)
    boot_late_modules(&late); /* late is empty from here on */
  else
    root_fd = boot_root_async("/dev/vda", &root, &late, &late_loader);
  boot_modules("/modules.port");
  port = boot_open_port(10000);
  if (port < 0) {
    logf_console("no virtio-serial port named %s", AGENT_PORT_NAME);
    power_off();
  }
  struct utsname u;
  uname(&u);
  send_frame(AF_READY, 0, u.release, strlen(u.release));
  /* The host's create returns on READY and its start follows: the rest gets ready meanwhile. */
  boot_free_initramfs();
  boot_loopback();
  if (template) {
    /* The host snapshots the machine here; what follows runs in each restored copy. */
    while (!resumed) {
      struct pollfd p = {.fd = port, .events = POLLIN};
      if (poll(&p, 1, -1) > 0)
        pump_port(p.revents);
    }
    root_fd = boot_root_async("/dev/vda", &root, &late, &late_loader);
  }
  if (boot_switch_root(root_fd, root_error, sizeof root_error) < 0)
    logf_console("%s", root_error);
  if (template)
    send_frame(AF_READY, 0, u.release, strlen(u.release));

  /* The power button appears once the late modules are in (and devtmpfs has its node): looked for a while. */
  int power = -1;
  if (late_loader <= 0)
    power_search_until = monotonic_ms() + 5000;

  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  reap(); /* a child that ended before SIGCHLD was blocked (the late loader) */

  for (;;) {
    struct pollfd p[3 + 2 * MAX_SESSIONS];
    struct session *owner[3 + 2 * MAX_SESSIONS];
    nfds_t n = 0;
    p[n] = (struct pollfd){.fd = port, .events = POLLIN};
    owner[n++] = NULL;
    p[n] = (struct pollfd){.fd = sfd, .events = POLLIN};
    owner[n++] = NULL;
    bool searching = power < 0 && monotonic_ms() < power_search_until;
    if (searching && (power = boot_open_power_button()) >= 0)
      searching = false;
    p[n] = (struct pollfd){.fd = power, .events = POLLIN}; /* fd -1: ignored by poll */
    owner[n++] = NULL;
    bool draining = false;
    for (size_t i = 0; i < MAX_SESSIONS; i++) {
      struct session *s = &sessions[i];
      if (!s->used)
        continue;
      if (s->exited)
        draining = true;
      if (s->out_fd >= 0) {
        p[n] = (struct pollfd){.fd = s->out_fd, .events = POLLIN};
        owner[n++] = s;
      }
      if (s->err_fd >= 0) {
        p[n] = (struct pollfd){.fd = s->err_fd, .events = POLLIN};
        owner[n++] = s;
      }
    }
    int r = poll(p, n, draining ? 50 : searching ? 20 : -1);
    if (r < 0 && errno != EINTR)
      logf_console("poll: %s", strerror(errno));
    if (r > 0) {
      for (nfds_t k = 3; k < n; k++)
        if (p[k].revents && owner[k]->used)
          session_pump(owner[k], p[k].fd);
      if (p[2].revents && boot_power_pressed(power)) {
        /* QMP system_powerdown: the main process is asked to stop, as `stop` asks it; no process, no wait */
        struct session *main_session = session_find(0);
        if (!main_session)
          power_off();
        session_input(main_session, AF_SIGNAL, "15", 2);
      }
      if (p[1].revents) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == sizeof si) {
        }
        reap();
      }
      pump_port(p[0].revents);
    }
    reap();
    long long now = monotonic_ms();
    for (size_t i = 0; i < MAX_SESSIONS; i++) {
      struct session *s = &sessions[i];
      if (s->used && session_finish(s, now, false) && s->id == 0)
        power_off();
    }
  }
}
