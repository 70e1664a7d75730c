/*
 * abode-shim: the per-instance monitor. `abode-shim SPECFILE` prepares the process described by
 * the spec (protocol.h), prints one JSON line (ShimReady) on stdout and then stays as the
 * process's monitor (monitor.c). `abode-shim --dump-spec SPECFILE` prints the decoded spec as JSON.
 * `abode-shim --relay SOCKET` joins a vm shim's agent channel as a new session over its stdio (exec).
 * `abode-shim --hold-memory BYTES` holds a VM template's guest RAM (hold_memory).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "container.h"
#include "monitor.h"
#include "process.h"
#include "protocol.h"
#include "spec.h"

static void print_line(struct buf *b) {
  buf_append(b, "\n", 1);
  write_all(STDOUT_FILENO, b->data, b->len);
}

static void print_error(const struct error *err) {
  struct buf b = {0};
  buf_append(&b, "{\"ok\":false,\"step\":", 19);
  buf_json_string(&b, err->step);
  buf_printf(&b, ",\"errno\":%d,\"path\":", err->errnum);
  buf_json_string(&b, err->path);
  buf_append(&b, ",\"message\":", 11);
  buf_json_string(&b, err->message);
  buf_append(&b, "}", 1);
  print_line(&b);
  buf_free(&b);
}

static int listen_socket(const char *path, struct error *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path)
    return fail(err, ENAMETOOLONG, "socket", path, "socket %s", path);
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return fail(err, errno, "socket", path, "socket %s", path);
  unlink(path);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0) {
    int e = errno;
    close(fd);
    return fail(err, e, "socket", path, "listen on %s", path);
  }
  return fd;
}

static int set_nonblock(int fd) { return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Everything the shim holds while it prepares the child; undone on failure. */
struct setup {
  struct monitor m;
  pid_t child;  /* the clone (run) or the intermediate fork (exec) */
  int child_sync;
  int child_in, child_out, child_err;
};

static _Noreturn void abandon(struct setup *s, const struct error *err) {
  if (s->m.pid > 0)
    kill(s->m.pid, SIGKILL);
  if (s->child > 0)
    kill(s->child, SIGKILL);
  if (s->child > 0)
    waitpid(s->child, NULL, 0);
  if (s->m.pid > 0 && s->m.pid != s->child)
    waitpid(s->m.pid, NULL, 0);
  if (s->m.spec && s->m.spec->socket_path[0] && s->m.listen_fd >= 0)
    unlink(s->m.spec->socket_path);
  print_error(err);
  exit(1);
}

/* Reads the child's reports until it is prepared (holding) or has exec'd. */
static int handshake(struct setup *s, struct error *err) {
  struct monitor *m = &s->m;
  const struct shim_spec *spec = m->spec;
  bool prepared = false;
  while (1) {
    struct sync_msg msg;
    int fd;
    int r = sync_recv(m->sync_fd, &msg, &fd);
    if (r < 0)
      return fail(err, errno, "sync", "", "read from child");
    if (r == 0) {
      if (prepared)
        return 0; /* exec'd (the sync socket is close-on-exec) */
      int status = 0;
      if (s->child > 0 && waitpid(s->child, &status, 0) == s->child) {
        if (s->child == m->pid)
          m->pid = 0;
        s->child = 0;
      }
      return fail(err, ECHILD, "setup", "", "the process exited during setup (status %d)", status);
    }
    switch (msg.kind) {
    case SYNC_ERROR:
    case SYNC_EXEC_FAILED:
      *err = msg.err;
      err->step[sizeof err->step - 1] = 0;
      err->path[sizeof err->path - 1] = 0;
      err->message[sizeof err->message - 1] = 0;
      return -1;
    case SYNC_PID:
      m->pid = msg.pid;
      /* The intermediate child exits now; its child is reparented to us (a subreaper). */
      waitpid(s->child, NULL, 0);
      s->child = 0;
      break;
    case SYNC_PTY:
      if (fd < 0)
        return fail(err, EPROTO, "terminal", "", "no pty received");
      m->pty_fd = m->out_fd = m->in_fd = fd;
      set_nonblock(fd);
      break;
    case SYNC_PREPARED:
      prepared = true;
      if (spec->hold)
        return 0;
      break;
    default:
      return fail(err, EPROTO, "sync", "", "unexpected message %u", msg.kind);
    }
  }
}

/* Copies stdin to a vm shim's session connection and the connection to stdout, until either ends. */
/*
 * --hold-memory BYTES: the guest RAM of a VM template. Makes a memfd of that size, prints
 * {"pid":P,"fd":N} (a template's QEMU maps /proc/P/fd/N shared, its copies map it private), then reads
 * lines on stdin: "seal" forbids every write to it from then on (the copies' private mappings still
 * work, and a copy's attempt to punch a hole in it fails instead of reaching the other copies) and
 * answers "ok" or "error ...". After stdin closes it holds the memory until it is killed.
 */
static int hold_memory(const char *bytes) {
  char *end;
  unsigned long long size = strtoull(bytes, &end, 10);
  int fd = size > 0 && *end == 0 ? memfd_create("abode-template", MFD_ALLOW_SEALING) : -1;
  if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
    printf("{\"error\":\"guest memory of %s bytes: %s\"}\n", bytes, fd < 0 && size == 0 ? "bad size" : strerror(errno));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* templates end with the daemon; running copies keep their mappings */
  if (getppid() == 1)
    return 1;
  printf("{\"pid\":%d,\"fd\":%d}\n", getpid(), fd);
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    if (strcmp(line, "seal\n") != 0) {
      printf("error unknown command\n");
    } else if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
      printf("error seal: %s\n", strerror(errno));
    } else {
      printf("ok\n");
    }
    fflush(stdout);
  }
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, STDIN_FILENO);
    dup2(devnull, STDOUT_FILENO);
  }
  for (;;)
    pause();
}

static int relay(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path)
    return 1;
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    fprintf(stderr, "abode-shim: connect %s: %s\n", path, strerror(errno));
    return 1;
  }
  if (write_all(fd, "session\n", 8) < 0)
    return 1;
  signal(SIGPIPE, SIG_IGN);
  char buf[65536];
  for (;;) {
    struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      return 1;
    }
    for (int i = 0; i < 2; i++) {
      if (!p[i].revents)
        continue;
      ssize_t r = read(p[i].fd, buf, sizeof buf);
      if (r <= 0)
        return 0;
      if (write_all(i == 0 ? fd : STDOUT_FILENO, buf, (size_t)r) < 0)
        return 0;
    }
  }
}

static int dump_spec(const char *path) {
  struct shim_spec spec;
  struct error err;
  if (spec_load(path, &spec, &err) < 0) {
    fprintf(stderr, "abode-shim: %s\n", err.message);
    return 1;
  }
  struct buf b = {0};
  spec_dump_json(&spec, &b);
  print_line(&b);
  buf_free(&b);
  return 0;
}

/* Set when a standby shim already sits in the instance's cgroups: its child inherits them. */
static bool in_cgroups;

/*
 * --standby PROCS...: join the given cgroups now (a v1 migration waits out an RCU grace period, so the
 * daemon starts standby shims ahead of need), then wait for a spec path on stdin and run it.
 * Returns the spec path, or NULL when stdin closes first (the daemon no longer needs us).
 */
static const char *standby(int n, char **procs) {
  static char path[4096];
  for (int i = 0; i < n; i++) {
    int fd = open(procs[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, "0", 1) < 0) {
      fprintf(stderr, "abode-shim: join %s: %s\n", procs[i], strerror(errno));
      if (fd >= 0)
        close(fd);
      return NULL;
    }
    close(fd);
  }
  /* The OOM killer must pick the instance's processes, never its monitor. */
  int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (adj >= 0) {
    (void)write_all(adj, "-1000", 5);
    close(adj);
  }
  size_t len = 0;
  while (len < sizeof path - 1) {
    ssize_t r = read(STDIN_FILENO, path + len, 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return NULL;
    if (path[len] == '\n')
      break;
    len++;
  }
  path[len] = 0;
  in_cgroups = true;
  return path;
}

int main(int argc, char **argv) {
  static char *standby_args[3];
  if (argc >= 2 && strcmp(argv[1], "--standby") == 0) {
    signal(SIGPIPE, SIG_IGN);
    const char *spec_path = standby(argc - 2, argv + 2);
    if (spec_path == NULL)
      return 0;
    standby_args[0] = argv[0];
    standby_args[1] = (char *)spec_path;
    argc = 2;
    argv = standby_args;
  }
  if (argc == 3 && strcmp(argv[1], "--dump-spec") == 0)
    return dump_spec(argv[2]);
  if (argc == 3 && strcmp(argv[1], "--relay") == 0)
    return relay(argv[2]);
  if (argc == 3 && strcmp(argv[1], "--hold-memory") == 0)
    return hold_memory(argv[2]);
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    printf("abode-shim protocol %d\n", SHIM_PROTOCOL_VERSION);
    return 0;
  }
  if (argc != 2) {
    fprintf(stderr, "usage: abode-shim SPECFILE | --dump-spec SPECFILE\n");
    return 2;
  }
  static struct shim_spec spec;
  static struct setup s;
  struct error err;
  struct monitor *m = &s.m;
  m->listen_fd = m->sig_fd = m->sync_fd = m->log_fd = m->devnull_fd = -1;
  m->out_fd = m->err_fd = m->in_fd = m->pty_fd = -1;
  s.child_sync = s.child_in = s.child_out = s.child_err = -1;

  signal(SIGPIPE, SIG_IGN);
  if (spec_load(argv[1], &spec, &err) < 0)
    abandon(&s, &err);
  m->spec = &spec;
  setsid();

  m->devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (m->devnull_fd < 0) {
    fail(&err, errno, "setup", "/dev/null", "open /dev/null");
    abandon(&s, &err);
  }
  if (spec.log_path[0]) {
    m->log_fd = open(spec.log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (m->log_fd < 0) {
      fail(&err, errno, "log", spec.log_path, "open log %s", spec.log_path);
      abandon(&s, &err);
    }
  }
  if (spec.socket_path[0] && (m->listen_fd = listen_socket(spec.socket_path, &err)) < 0)
    abandon(&s, &err);

  /* Agent mode: the child's stdio is the agent channel; START, not the child's exec, is held. */
  bool hold = spec.hold;
  if (spec.agent) {
    spec.terminal = false;
    spec.open_stdin = true;
    spec.hold = false;
  }
  int p[2];
  if (!spec.terminal) {
    if (pipe2(p, O_CLOEXEC) < 0)
      goto pipe_failed;
    m->out_fd = p[0], s.child_out = p[1];
    if (pipe2(p, O_CLOEXEC) < 0)
      goto pipe_failed;
    m->err_fd = p[0], s.child_err = p[1];
    if (spec.open_stdin) {
      if (pipe2(p, O_CLOEXEC) < 0)
        goto pipe_failed;
      s.child_in = p[0], m->in_fd = p[1];
      set_nonblock(m->in_fd);
    } else {
      s.child_in = m->devnull_fd;
    }
    set_nonblock(m->out_fd);
    set_nonblock(m->err_fd);
  }
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
    goto pipe_failed;
  m->sync_fd = sp[0], s.child_sync = sp[1];

  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  m->sig_fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (m->sig_fd < 0)
    goto pipe_failed;

  struct child_ctx ctx = {.spec = &spec,
                          .sync_fd = s.child_sync,
                          .stdin_fd = s.child_in,
                          .stdout_fd = s.child_out,
                          .stderr_fd = s.child_err,
                          .devnull_fd = m->devnull_fd};
  fflush(NULL);
  pid_t pid;
  if (spec.mode == 0)
    pid = (pid_t)syscall(SYS_clone, (unsigned long)(spec.namespaces & ~(uint32_t)CLONE_NEWCGROUP) | SIGCHLD,
                         NULL, NULL, NULL, NULL);
  else
    pid = fork();
  if (pid < 0) {
    fail(&err, errno, "clone", "", "clone");
    abandon(&s, &err);
  }
  if (pid == 0) {
    /* The child keeps only its own ends (and /dev/null). */
    int mine[] = {m->listen_fd, m->sig_fd, m->sync_fd, m->log_fd, m->out_fd, m->err_fd};
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
      if (mine[i] >= 0)
        close(mine[i]);
    if (m->in_fd >= 0)
      close(m->in_fd);
    if (spec.mode == 0)
      child_run(&ctx);
    child_exec(&ctx);
  }
  s.child = pid;
  if (spec.mode == 0) {
    m->pid = pid;
    /* Moving a process between cgroups can wait out an RCU grace period (v1): do it here while the child
       sets up its mounts, then let the child go on to its cgroup namespace and exec. */
    if (!in_cgroups && place_in_cgroups(&spec, pid, &err) < 0)
      abandon(&s, &err);
    char go = 'c';
    if (send(m->sync_fd, &go, 1, MSG_NOSIGNAL) != 1) {
      fail(&err, errno, "sync", "", "release the child");
      abandon(&s, &err);
    }
  }
  close(s.child_sync);
  if (s.child_out >= 0)
    close(s.child_out);
  if (s.child_err >= 0)
    close(s.child_err);
  if (s.child_in >= 0 && s.child_in != m->devnull_fd)
    close(s.child_in);

  if (handshake(&s, &err) < 0)
    abandon(&s, &err);
  m->state = spec.hold ? STATE_CREATED : STATE_RUNNING;
  if (!spec.hold) {
    close(m->sync_fd);
    m->sync_fd = -1;
  }
  if (spec.agent) {
    if (monitor_agent_boot(m, &err) < 0)
      abandon(&s, &err);
    spec.hold = hold;
    m->state = STATE_CREATED;
    if (!hold)
      monitor_agent_start(m);
  }

  struct buf b = {0};
  if (spec.agent)
    buf_printf(&b, "{\"ok\":true,\"pid\":%d,\"shimPid\":%d,\"bootMs\":%lld}", m->pid, getpid(), m->boot_ms);
  else
    buf_printf(&b, "{\"ok\":true,\"pid\":%d,\"shimPid\":%d}", m->pid, getpid());
  print_line(&b);
  buf_free(&b);
  dup2(m->devnull_fd, STDOUT_FILENO);
  if (chdir("/") < 0) {
  }
  monitor_run(m);

pipe_failed:
  fail(&err, errno, "setup", "", "create pipes");
  abandon(&s, &err);
}
