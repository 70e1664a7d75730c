/* Sessions: one process each (session 0 is the instance's main process), its stdio relayed as frames. */
#define _GNU_SOURCE
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

struct session sessions[MAX_SESSIONS];
bool discard_root;

#define MAX_LIST 1024

struct proc_spec {
  char *args[MAX_LIST + 1];
  size_t nargs;
  char *env[MAX_LIST + 1];
  size_t nenv;
  gid_t gids[64];
  size_t ngids;
  const char *cwd, *hostname;
  uid_t uid;
  gid_t gid;
  bool terminal, open_stdin, read_only, discard, list;
  unsigned short rows, cols;
  char *mounts[32]; /* "<tag> <ro|rw> <path>" */
  size_t nmounts;
  char *tmpfs[32]; /* "<flags> <options|-> <path>" */
  size_t ntmpfs;
};

long long monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct session *session_find(uint16_t id) {
  for (size_t i = 0; i < MAX_SESSIONS; i++)
    if (sessions[i].used && sessions[i].id == id)
      return &sessions[i];
  return NULL;
}

static void parse_spec(char *payload, size_t len, struct proc_spec *p) {
  memset(p, 0, sizeof *p);
  p->cwd = "/";
  for (size_t off = 0; off < len;) {
    char *entry = payload + off;
    size_t n = strnlen(entry, len - off);
    off += n + 1;
    if (n < 2 || entry[1] != '=')
      continue;
    char *v = entry + 2;
    switch (entry[0]) {
    case 'a':
      if (p->nargs < MAX_LIST)
        p->args[p->nargs++] = v;
      break;
    case 'e':
      if (p->nenv < MAX_LIST)
        p->env[p->nenv++] = v;
      break;
    case 'c':
      p->cwd = v;
      break;
    case 'h':
      p->hostname = v;
      break;
    case 'u':
      p->uid = (uid_t)strtoul(v, NULL, 10);
      break;
    case 'g':
      p->gid = (gid_t)strtoul(v, NULL, 10);
      break;
    case 'G':
      if (p->ngids < sizeof p->gids / sizeof p->gids[0])
        p->gids[p->ngids++] = (gid_t)strtoul(v, NULL, 10);
      break;
    case 't':
      p->terminal = v[0] == '1';
      break;
    case 'i':
      p->open_stdin = v[0] == '1';
      break;
    case 'r':
      p->rows = (unsigned short)strtoul(v, NULL, 10);
      break;
    case 'w':
      p->cols = (unsigned short)strtoul(v, NULL, 10);
      break;
    case 'R':
      p->read_only = v[0] == '1';
      break;
    case 'D':
      p->discard = v[0] == '1';
      break;
    case 'm':
      if (p->nmounts < sizeof p->mounts / sizeof p->mounts[0])
        p->mounts[p->nmounts++] = v;
      break;
    case 'T':
      if (p->ntmpfs < sizeof p->tmpfs / sizeof p->tmpfs[0])
        p->tmpfs[p->ntmpfs++] = v;
      break;
    case 'C':
      agent_set_clock(v);
      break;
    case 'P':
      p->list = v[0] == '1';
      break;
    }
  }
}

static void send_text(int type, uint16_t session, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void send_text(int type, uint16_t session, const char *fmt, ...) {
  char text[1200];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  if ((size_t)n >= sizeof text)
    n = sizeof text - 1;
  send_frame(type, session, text, (size_t)n);
}

/* Reports a start failure: ERROR then EXIT with docker's code (127 not found, 126 cannot execute). */
static void start_failed(uint16_t id, const char *step, int errnum, const char *message) {
  send_text(AF_ERROR, id, "%s %d %s", step, errnum, message);
  int code = step[0] == 'e' && errnum == ENOENT ? 127 : step[0] == 'e' ? 126 : 125;
  send_text(AF_EXIT, id, "%d 0", code);
}

static void mkdir_p(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(tmp, 0755);
      *p = '/';
    }
  mkdir(tmp, 0755);
}

/* Writes a small file whole; false on failure. */
static bool write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return false;
  bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
  close(fd);
  return ok;
}

/*
 * /etc/hostname and /etc/hosts as a container has them: files of the agent's own, on the guest's
 * devtmpfs, bind-mounted over the image's (the root disk's init layer has both). The image's disk is
 * not written (under TCG its first write costs disk reads), and --read-only leaves them writable, as
 * docker does.
 */
static void provide_etc_files(const char *hostname) {
  static const char dir[] = "/dev/.abode";
  char hosts[512];
  snprintf(hosts, sizeof hosts,
           "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
           "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
           hostname);
  char name[300];
  snprintf(name, sizeof name, "%s\n", hostname);
  const char *files[][2] = {{"hostname", name}, {"hosts", hosts}};
  mkdir(dir, 0755);
  for (size_t i = 0; i < 2; i++) {
    char source[64], target[64];
    snprintf(source, sizeof source, "%s/%s", dir, files[i][0]);
    snprintf(target, sizeof target, "/etc/%s", files[i][0]);
    struct stat st;
    if (!write_file(source, files[i][1]))
      logf_console("write %s: %s", source, strerror(errno));
    else if (stat(target, &st) < 0 && (mkdir("/etc", 0755), !write_file(target, "")))
      logf_console("create %s: %s", target, strerror(errno));
    else if (mount(source, target, NULL, MS_BIND, NULL) < 0)
      logf_console("bind %s: %s", target, strerror(errno));
  }
}

/* The main process's file systems: virtio-fs shares at their paths, then the root read-only if asked. */
static int prepare_root(struct proc_spec *p, char *err, size_t errlen) {
  if (p->nmounts > 0)
    boot_load_modules(&virtiofs_modules);
  for (size_t i = 0; i < p->nmounts; i++) {
    char *tag = p->mounts[i], *mode = strchr(tag, ' ');
    char *path = mode ? strchr(mode + 1, ' ') : NULL;
    if (!path) {
      snprintf(err, errlen, "bad mount entry %s", tag);
      return EINVAL;
    }
    *mode++ = 0;
    *path++ = 0;
    mkdir_p(path);
    unsigned long flags = MS_NOSUID | MS_NODEV | (strcmp(mode, "ro") == 0 ? MS_RDONLY : 0);
    if (mount(tag, path, "virtiofs", flags, NULL) < 0) {
      int e = errno;
      snprintf(err, errlen, "mount the shared directory at %s (virtio-fs %s): %s", path, tag, strerror(e));
      return e;
    }
  }
  for (size_t i = 0; i < p->ntmpfs; i++) {
    char *data = strchr(p->tmpfs[i], ' ');
    char *path = data ? strchr(data + 1, ' ') : NULL;
    if (!path) {
      snprintf(err, errlen, "bad tmpfs entry %s", p->tmpfs[i]);
      return EINVAL;
    }
    *data++ = 0;
    *path++ = 0;
    mkdir_p(path);
    unsigned long flags = strtoul(p->tmpfs[i], NULL, 10);
    if (mount("tmpfs", path, "tmpfs", flags, strcmp(data, "-") == 0 ? NULL : data) < 0) {
      int e = errno;
      snprintf(err, errlen, "mount a tmpfs at %s (%s): %s", path, data, strerror(e));
      return e;
    }
  }
  if (p->read_only && mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOATIME, NULL) < 0) {
    int e = errno;
    snprintf(err, errlen, "remount the root read-only: %s", strerror(e));
    return e;
  }
  return 0;
}

struct child_error {
  int step; /* 0 chdir, 1 user, 2 exec */
  int errnum;
};

/*
 * The guest's processes for `abode top`, a line each, tab-separated: uid, pid, ppid, the start as
 * seconds since the epoch, the controlling terminal's device number, CPU time in seconds, and the
 * command line ([name] when it has none). Kernel threads (kthreadd and its children) and this lister
 * are left out, as a container's top shows neither.
 */
static void list_processes(void) {
  static char text[4096], line[8192], proc_stat[65536];
  long long boot = 0;
  if (read_small("/proc/stat", proc_stat, sizeof proc_stat) > 0) {
    char *b = strstr(proc_stat, "\nbtime ");
    if (b)
      boot = strtoll(b + 7, NULL, 10);
  }
  long hz = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
  DIR *d = opendir("/proc");
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0 || pid == getpid())
      continue;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (read_small(path, text, sizeof text) <= 0)
      continue;
    char *close_paren = strrchr(text, ')'), *open_paren = strchr(text, '(');
    if (!close_paren || !open_paren)
      continue;
    *close_paren = 0;
    /* fields after the name: 3 state, 4 ppid, ..., 7 tty_nr, ..., 14 utime, 15 stime, ..., 22 starttime */
    char *f[24] = {0};
    int n = 3;
    for (char *save = NULL, *t = strtok_r(close_paren + 2, " ", &save); t && n < 23; t = strtok_r(NULL, " ", &save))
      f[n++] = t;
    if (n < 23 || pid == 2 || strtol(f[4], NULL, 10) == 2)
      continue;
    struct stat st;
    snprintf(path, sizeof path, "/proc/%ld", pid);
    unsigned uid = stat(path, &st) == 0 ? (unsigned)st.st_uid : 0;
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    ssize_t clen = read_small(path, line, sizeof line);
    for (ssize_t i = 0; i + 1 < clen; i++)
      if (line[i] == 0)
        line[i] = ' ';
    long long start = boot + strtoll(f[22], NULL, 10) / hz;
    long long cpu = (strtoll(f[14], NULL, 10) + strtoll(f[15], NULL, 10)) / hz;
    printf("%u\t%ld\t%s\t%lld\t%s\t%lld\t%s%s%s\n", uid, pid, f[4], start, f[7], cpu,
           clen > 0 ? "" : "[", clen > 0 ? line : open_paren + 1, clen > 0 ? "" : "]");
  }
  if (d)
    closedir(d);
  fflush(stdout);
}

static _Noreturn void child(struct proc_spec *p, int in, int out, int err, int pty_slave, int report) {
  struct child_error ce = {0, 0};
  sigset_t none; /* the agent sets no handlers: only its blocked SIGCHLD needs undoing */
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  if (pty_slave >= 0) {
    ioctl(pty_slave, TIOCSCTTY, 0);
    in = out = err = pty_slave;
  }
  dup2(in, 0);
  dup2(out, 1);
  dup2(err, 2);
  if (report > 3)
    close_range(3, (unsigned)report - 1, 0);
  close_range((unsigned)report + 1, ~0u, 0);
  if (p->list) {
    close(report); /* started: what it prints is the answer */
    list_processes();
    _exit(0);
  }
  mkdir_p(p->cwd);
  if (setgroups(p->ngids, p->gids) < 0 || setgid(p->gid) < 0 || setuid(p->uid) < 0) {
    ce = (struct child_error){1, errno};
    goto fail;
  }
  if (chdir(p->cwd) < 0) {
    ce = (struct child_error){0, errno};
    goto fail;
  }
  extern char **environ;
  environ = p->env;
  execvp(p->args[0], p->args);
  ce = (struct child_error){2, errno};
fail:
  (void)!write(report, &ce, sizeof ce);
  _exit(127);
}

void session_start(uint16_t id, const char *payload, size_t len, const char *root_error) {
  static char copy[AGENT_MAX_PAYLOAD + 1];
  static struct proc_spec p;
  if (root_error && root_error[0]) {
    start_failed(id, "rootfs", EIO, root_error);
    return;
  }
  struct session *s = NULL;
  for (size_t i = 0; i < MAX_SESSIONS && !s; i++)
    if (!sessions[i].used)
      s = &sessions[i];
  if (s == NULL || session_find(id)) {
    start_failed(id, "session", EBUSY, s ? "session already started" : "too many sessions");
    return;
  }
  memcpy(copy, payload, len);
  copy[len] = 0;
  parse_spec(copy, len, &p);
  if (p.nargs == 0) {
    start_failed(id, "spec", EINVAL, "no command");
    return;
  }
  if (id == 0)
    discard_root = p.discard;
  if (id == 0 && p.hostname && p.hostname[0]) {
    if (sethostname(p.hostname, strlen(p.hostname)) < 0)
      logf_console("sethostname: %s", strerror(errno));
    provide_etc_files(p.hostname);
  }
  if (id == 0) {
    char msg[600];
    int e = prepare_root(&p, msg, sizeof msg);
    if (e) {
      start_failed(id, "mount", e, msg);
      return;
    }
  }
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, report[2];
  int master = -1, slave = -1;
  if (p.terminal) {
    struct winsize ws = {.ws_row = p.rows ? p.rows : 24, .ws_col = p.cols ? p.cols : 80};
    if (openpty(&master, &slave, NULL, NULL, &ws) < 0) {
      start_failed(id, "terminal", errno, "openpty failed");
      return;
    }
    fcntl(master, F_SETFD, FD_CLOEXEC);
  } else {
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
      start_failed(id, "pipes", errno, "pipe failed");
      return;
    }
    if (p.open_stdin) {
      if (pipe2(in, O_CLOEXEC) < 0) {
        start_failed(id, "pipes", errno, "pipe failed");
        return;
      }
    } else {
      in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
  }
  if (pipe2(report, O_CLOEXEC) < 0) {
    start_failed(id, "pipes", errno, "pipe failed");
    return;
  }
  pid_t pid = fork();
  if (pid == 0)
    child(&p, in[0], out[1], err[1], slave, report[1]);
  close(report[1]);
  if (slave >= 0)
    close(slave);
  if (in[0] >= 0)
    close(in[0]);
  if (out[1] >= 0)
    close(out[1]);
  if (err[1] >= 0)
    close(err[1]);
  if (pid < 0) {
    close(report[0]);
    start_failed(id, "fork", errno, "fork failed");
    return;
  }
  struct child_error ce;
  ssize_t r = read(report[0], &ce, sizeof ce);
  close(report[0]);
  *s = (struct session){.used = true,
                        .id = id,
                        .pid = pid,
                        .in_fd = master >= 0 ? master : in[1],
                        .out_fd = master >= 0 ? master : out[0],
                        .err_fd = master >= 0 ? -1 : err[0],
                        .pty_fd = master};
  if (s->out_fd >= 0)
    fcntl(s->out_fd, F_SETFL, O_NONBLOCK);
  if (s->err_fd >= 0)
    fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
  if (r == (ssize_t)sizeof ce) {
    static const char *steps[] = {"chdir", "user", "exec"};
    char msg[512];
    snprintf(msg, sizeof msg, "%s %s: %s", steps[ce.step], ce.step == 2 ? p.args[0] : p.cwd, strerror(ce.errnum));
    send_text(AF_ERROR, id, "%s %d %s", steps[ce.step], ce.errnum, msg);
    /* The EXIT follows once the child is reaped, with 127/126 decided here. */
    s->status = -(ce.step == 2 && ce.errnum == ENOENT ? 127 : ce.step == 2 ? 126 : 125);
    return;
  }
  send_text(AF_STARTED, id, "%d", pid);
}

void session_input(struct session *s, int type, const char *data, size_t len) {
  if (type == AF_STDIN && s->in_fd >= 0) {
    size_t off = 0;
    while (off < len) {
      ssize_t w = write(s->in_fd, data + off, len - off);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        if (errno == EAGAIN) {
          struct timespec ts = {0, 1000000};
          nanosleep(&ts, NULL);
          continue;
        }
        break;
      }
      off += (size_t)w;
    }
  } else if (type == AF_STDIN_EOF && s->in_fd >= 0 && s->pty_fd < 0) {
    close(s->in_fd);
    s->in_fd = -1;
  } else if (type == AF_RESIZE && s->pty_fd >= 0) {
    char text[64];
    unsigned rows = 0, cols = 0;
    snprintf(text, sizeof text, "%.*s", (int)(len < 63 ? len : 63), data);
    if (sscanf(text, "%u %u", &rows, &cols) == 2) {
      struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
      ioctl(s->pty_fd, TIOCSWINSZ, &ws);
    }
  } else if (type == AF_SIGNAL && !s->exited) {
    char text[32];
    snprintf(text, sizeof text, "%.*s", (int)(len < 31 ? len : 31), data);
    kill(s->pid, atoi(text));
  }
}

void session_pump(struct session *s, int fd) {
  static char chunk[65536];
  ssize_t r = read(fd, chunk, sizeof chunk);
  if (r > 0) {
    send_frame(fd == s->err_fd ? AF_STDERR : AF_STDOUT, s->id, chunk, (size_t)r);
    return;
  }
  if (r < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (fd == s->err_fd) {
    close(s->err_fd);
    s->err_fd = -1;
  } else {
    if (s->out_fd != s->pty_fd)
      close(s->out_fd);
    s->out_fd = -1;
  }
}

bool session_finish(struct session *s, long long now, bool force) {
  if (!s->exited)
    return false;
  bool drained = s->out_fd < 0 && s->err_fd < 0;
  if (!drained && !force && now - s->exited_at < 200)
    return false;
  int code, sig = 0;
  if (s->status < 0 && s->status > -256) {
    code = -s->status;
  } else if (WIFSIGNALED(s->status)) {
    sig = WTERMSIG(s->status);
    code = 128 + sig;
  } else {
    code = WEXITSTATUS(s->status);
  }
  char text[64];
  int n = snprintf(text, sizeof text, "%d %d", code, sig);
  send_frame(AF_EXIT, s->id, text, (size_t)n);
  int fds[] = {s->in_fd, s->out_fd, s->err_fd, s->pty_fd};
  for (size_t i = 0; i < 4; i++) {
    bool seen = false;
    for (size_t j = 0; j < i; j++)
      seen |= fds[j] == fds[i];
    if (fds[i] >= 0 && !seen)
      close(fds[i]);
  }
  s->used = false;
  return true;
}
