#define _GNU_SOURCE
#include "process.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "container.h"
#include "security.h"

int sync_send(int fd, uint32_t kind, int32_t pid, const struct error *err, int pass_fd) {
  struct sync_msg msg;
  memset(&msg, 0, sizeof msg);
  msg.kind = kind;
  msg.pid = pid;
  if (err)
    msg.err = *err;
  struct iovec iov = {.iov_base = &msg, .iov_len = sizeof msg};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (pass_fd >= 0) {
    memset(&u, 0, sizeof u);
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  ssize_t r;
  do
    r = sendmsg(fd, &mh, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  return r < 0 ? -1 : 0;
}

int sync_recv(int fd, struct sync_msg *msg, int *passed_fd) {
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct iovec iov = {.iov_base = msg, .iov_len = sizeof *msg};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  *passed_fd = -1;
  ssize_t r;
  do
    r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return -1;
  if (r == 0)
    return 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      memcpy(passed_fd, CMSG_DATA(c), sizeof(int));
  if ((size_t)r < sizeof *msg) {
    errno = EPROTO;
    return -1;
  }
  return 1;
}

static _Noreturn void report(struct child_ctx *c, const struct error *err) {
  sync_send(c->sync_fd, SYNC_ERROR, 0, err, -1);
  _exit(1);
}

static void reset_signals(void) {
  sigset_t all;
  sigemptyset(&all);
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP)
      signal(s, SIG_DFL);
  sigprocmask(SIG_SETMASK, &all, NULL);
}

/* Early in every child: the container's stdio on 0-2 (the shim's own stdout/stderr must not leak). */
static void setup_stdio(struct child_ctx *c) {
  const struct shim_spec *s = c->spec;
  int in = s->terminal ? c->devnull_fd : c->stdin_fd;
  int out = s->terminal ? c->devnull_fd : c->stdout_fd;
  int errfd = s->terminal ? c->devnull_fd : c->stderr_fd;
  /* dup2 of 0-2 first onto safe numbers is unnecessary: all inherited fds are >= 3. */
  dup2(in, 0);
  dup2(out, 1);
  dup2(errfd, 2);
}

/* Opens a pty inside the container (so it is /dev/pts/N there) and hands the master to the shim. */
static int setup_pty(struct child_ctx *c, struct error *err) {
  cleanup_fd int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0)
    return fail(err, errno, "terminal", "/dev/ptmx", "open /dev/ptmx");
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
    return fail(err, errno, "terminal", "/dev/ptmx", "unlock pty");
  cleanup_fd int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
  if (slave < 0)
    return fail(err, errno, "terminal", "/dev/ptmx", "open pty peer");
  if (sync_send(c->sync_fd, SYNC_PTY, 0, NULL, master) < 0)
    return fail(err, errno, "terminal", "", "send pty");
  if (setsid() < 0)
    return fail(err, errno, "terminal", "", "setsid");
  if (ioctl(slave, TIOCSCTTY, 0) < 0)
    return fail(err, errno, "terminal", "", "set controlling terminal");
  if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
    return fail(err, errno, "terminal", "", "dup pty");
  return 0;
}

static const char *env_get(char **env, const char *name) {
  size_t n = strlen(name);
  for (; *env; env++)
    if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
      return *env + n + 1;
  return NULL;
}

/* An exec failure whose message is already docker's whole sentence (no strerror appended). */
static int exec_error(struct error *err, int errnum, const char *name, const char *what) {
  fail(err, 0, "exec", name, "exec: \"%s\": %s", name, what);
  err->errnum = errnum;
  return -1;
}

/* Resolves args[0] against PATH like execvp; ENOENT / EACCES as docker reports them. */
static int resolve_exe(const struct shim_spec *s, char *out, size_t n, struct error *err) {
  const char *name = s->args[0];
  struct stat st;
  if (name[0] == 0)
    return exec_error(err, ENOENT, name, "executable file not found in $PATH");
  if (strchr(name, '/')) {
    if (stat(name, &st) < 0)
      return fail(err, errno, "exec", name, "exec: \"%s\": stat %s", name, name);
    if (S_ISDIR(st.st_mode) || access(name, X_OK) < 0)
      return exec_error(err, EACCES, name, "permission denied");
    snprintf(out, n, "%s", name);
    return 0;
  }
  const char *path = env_get(s->env, "PATH");
  if (path == NULL)
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  bool denied = false;
  while (1) {
    const char *end = strchrnul(path, ':');
    int len = (int)(end - path);
    snprintf(out, n, "%.*s%s%s", len, len ? path : ".", "/", name);
    if (stat(out, &st) == 0 && !S_ISDIR(st.st_mode)) {
      if (access(out, X_OK) == 0)
        return 0;
      denied = true;
    }
    if (*end == 0)
      break;
    path = end + 1;
  }
  if (denied)
    return exec_error(err, EACCES, name, "permission denied");
  return exec_error(err, ENOENT, name, "executable file not found in $PATH");
}

/* mkdir -p, ignoring failures: chdir reports what matters. */
static void mkdir_parents(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = 0;
    mkdir(buf, 0755);
    *p = '/';
  }
  mkdir(buf, 0755);
}

/* rlimits .. execve; never returns. */
static _Noreturn void setup_process_and_exec(struct child_ctx *c) {
  const struct shim_spec *s = c->spec;
  struct error err;
  char exe[4096];
  if (s->terminal) {
    if (setup_pty(c, &err) < 0)
      report(c, &err);
  } else if (setsid() < 0 && errno != EPERM) {
    fail(&err, errno, "setsid", "", "setsid");
    report(c, &err);
  }
  if (apply_rlimits(s, &err) < 0 || apply_oom_score_adj(s, &err) < 0)
    report(c, &err);
  /* docker creates a missing working directory (as the root user, before the user switch). */
  if (s->mode == 0 && s->cwd[0] == '/')
    mkdir_parents(s->cwd);
  if (s->cwd[0] && chdir(s->cwd) < 0) {
    int e = errno;
    char lower[256];
    snprintf(lower, sizeof lower, "%s", strerror(e));
    lower[0] = (char)tolower((unsigned char)lower[0]);
    fail(&err, 0, "chdir", s->cwd, "chdir to cwd (\"%s\") set in config.json failed: %s", s->cwd, lower);
    err.errnum = e;
    report(c, &err);
  }
  /* Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before dropping privileges. */
  if (!s->no_new_privs && apply_seccomp(s, &err) < 0)
    report(c, &err);
  if (apply_user_and_caps(s, &err) < 0 || apply_no_new_privs(s, &err) < 0)
    report(c, &err);
  if (resolve_exe(s, exe, sizeof exe, &err) < 0)
    report(c, &err);
  if (sync_send(c->sync_fd, SYNC_PREPARED, 0, NULL, -1) < 0)
    _exit(1);
  if (s->hold) {
    char b;
    ssize_t r;
    do
      r = read(c->sync_fd, &b, 1);
    while (r < 0 && errno == EINTR);
    if (r != 1)
      _exit(1);
  }
  umask(022);
  if (s->no_new_privs && apply_seccomp(s, &err) < 0) {
    sync_send(c->sync_fd, SYNC_EXEC_FAILED, 0, &err, -1);
    _exit(126);
  }
  syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
  execve(exe, s->args, s->env);
  int e = errno;
  fail(&err, e, "exec", s->args[0], "exec %s", s->args[0]);
  sync_send(c->sync_fd, SYNC_EXEC_FAILED, 0, &err, -1);
  _exit(e == ENOENT ? 127 : 126);
}

/* docker --init: PID 1 reaps everything, forwards signals to the process and exits with its code. */
static _Noreturn void run_init(struct child_ctx *c) {
  static const int fwd[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++)
    sigaddset(&set, fwd[i]);
  sigprocmask(SIG_BLOCK, &set, NULL);
  pid_t pid = fork();
  if (pid < 0) {
    struct error err;
    fail(&err, errno, "init", "", "fork");
    report(c, &err);
  }
  if (pid == 0) {
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    setup_process_and_exec(c);
  }
  close(c->sync_fd);
  close(c->devnull_fd);
  if (c->stdin_fd >= 0)
    close(c->stdin_fd);
  if (c->stdout_fd >= 0)
    close(c->stdout_fd);
  if (c->stderr_fd >= 0)
    close(c->stderr_fd);
  while (1) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0)
      continue;
    if (sig != SIGCHLD) {
      kill(pid, sig);
      continue;
    }
    int status;
    pid_t p;
    while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
      if (p != pid)
        continue;
      if (WIFEXITED(status))
        _exit(WEXITSTATUS(status));
      if (WIFSIGNALED(status))
        _exit(128 + WTERMSIG(status));
    }
  }
}

_Noreturn void child_run(struct child_ctx *c) {
  struct error err;
  reset_signals();
  setup_stdio(c);
  umask(0);
  /* An empty rootfs runs the process in the host's file system (a VMM, an external OCI runtime). */
  if (c->spec->rootfs[0] && prepare_container(c->spec, &err) < 0)
    report(c, &err);
  /* The shim places us in our cgroups meanwhile; its go-ahead comes before the cgroup namespace. */
  char go;
  ssize_t r;
  do
    r = read(c->sync_fd, &go, 1);
  while (r < 0 && errno == EINTR);
  if (r != 1)
    _exit(1);
  if (enter_cgroup_namespace(c->spec, &err) < 0)
    report(c, &err);
  if (c->spec->init)
    run_init(c);
  setup_process_and_exec(c);
}

_Noreturn void child_exec(struct child_ctx *c) {
  struct error err;
  reset_signals();
  setup_stdio(c);
  if (join_target_namespaces(c->spec, &err) < 0)
    report(c, &err);
  pid_t pid = fork();
  if (pid < 0) {
    fail(&err, errno, "fork", "", "fork into the pid namespace");
    report(c, &err);
  }
  if (pid == 0)
    setup_process_and_exec(c);
  sync_send(c->sync_fd, SYNC_PID, pid, NULL, -1);
  _exit(0);
}
