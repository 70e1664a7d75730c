#define _GNU_SOURCE
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int place_in_cgroups(const struct shim_spec *spec, pid_t pid, struct error *err) {
  char num[16];
  int len = snprintf(num, sizeof num, "%d", (int)pid);
  for (size_t i = 0; i < spec->ncgroup_procs; i++) {
    const char *p = spec->cgroup_procs[i];
    cleanup_fd int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, num, (size_t)len) < 0)
      return fail(err, errno, "cgroup", p, "join cgroup %s", p);
  }
  return 0;
}

int join_cgroups(const struct shim_spec *spec, struct error *err) {
  for (size_t i = 0; i < spec->ncgroup_procs; i++) {
    const char *p = spec->cgroup_procs[i];
    cleanup_fd int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, "0", 1) < 0)
      return fail(err, errno, "cgroup", p, "join cgroup %s", p);
  }
  return 0;
}

/* Opens path under rootfd; symlinks and ".." resolve inside rootfd, never out of it. */
static int open_in_root(int rootfd, const char *path, int flags, mode_t mode) {
  struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                         .mode = (flags & O_CREAT) ? mode : 0,
                         .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  while (*path == '/')
    path++;
  if (*path == 0)
    path = ".";
  int fd;
  do
    fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
  while (fd < 0 && errno == EAGAIN);
  return fd;
}

/* mkdir -p of path under rootfd. */
static int mkdir_in_root(int rootfd, const char *path) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  char *p = buf;
  while (*p == '/')
    p++;
  while (*p) {
    char *slash = strchr(p, '/');
    if (slash)
      *slash = 0;
    cleanup_fd int fd = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY, 0);
    if (fd < 0) {
      if (errno != ENOENT)
        return -1;
      /* Create the component inside its (already resolved) parent. */
      char *base = strrchr(buf, '/');
      cleanup_fd int parent = -1;
      if (base) {
        *base = 0;
        parent = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY, 0);
        *base = '/';
        base++;
      } else {
        parent = open_in_root(rootfd, ".", O_PATH | O_DIRECTORY, 0);
        base = buf;
      }
      if (parent < 0)
        return -1;
      if (mkdirat(parent, base, 0755) < 0 && errno != EEXIST)
        return -1;
      int again = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY, 0);
      if (again < 0)
        return -1;
      close(again);
    }
    if (!slash)
      break;
    *slash = '/';
    p = slash + 1;
  }
  return 0;
}

/* Splits path into a resolved parent directory fd (created if missing) and its last component. */
static int open_parent(int rootfd, const char *path, const char **base) {
  char dir[4096];
  if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) {
    errno = ENAMETOOLONG;
    return -1;
  }
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = 0;
    *base = path + (slash - dir) + 1;
  } else {
    dir[0] = 0;
    *base = path;
  }
  if (**base == 0) {
    errno = EINVAL;
    return -1;
  }
  if (mkdir_in_root(rootfd, dir) < 0)
    return -1;
  return open_in_root(rootfd, dir, O_PATH | O_DIRECTORY, 0);
}

/* Makes sure a mount target exists under rootfd (a directory, or a file for a bind of a file). */
static int make_target(int rootfd, const char *target, bool file) {
  if (!file)
    return mkdir_in_root(rootfd, target);
  const char *base;
  cleanup_fd int parent = open_parent(rootfd, target, &base);
  if (parent < 0)
    return -1;
  int fd = open_in_root(rootfd, target, O_CREAT | O_WRONLY, 0644);
  if (fd < 0) {
    if (errno == EISDIR)
      return 0;
    return -1;
  }
  close(fd);
  return 0;
}

static void fd_path(int fd, char *out, size_t n) { snprintf(out, n, "/proc/self/fd/%d", fd); }

static int do_mount(int rootfd, const struct shim_mount *m, struct error *err) {
  bool bind = (m->flags & MS_BIND) || strcmp(m->fstype, "bind") == 0;
  bool file = false;
  if (bind) {
    struct stat st;
    if (stat(m->source, &st) < 0)
      return fail(err, errno, "mount", m->source, "mount %s to %s: stat %s", m->source, m->target, m->source);
    file = !S_ISDIR(st.st_mode);
  }
  if (make_target(rootfd, m->target, file) < 0)
    return fail(err, errno, "mount", m->target, "mount %s to %s: create mount point", m->source, m->target);
  cleanup_fd int fd = open_in_root(rootfd, m->target, O_PATH, 0);
  if (fd < 0)
    return fail(err, errno, "mount", m->target, "mount %s to %s: open mount point", m->source, m->target);
  char path[64];
  fd_path(fd, path, sizeof path);
  unsigned long flags = m->flags;
  if (bind) {
    if (mount(m->source, path, NULL, MS_BIND | (flags & MS_REC), NULL) < 0)
      return fail(err, errno, "mount", m->target, "mount %s to %s", m->source, m->target);
    unsigned long extra = flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT);
    if (extra) {
      cleanup_fd int top = open_in_root(rootfd, m->target, O_PATH, 0);
      char tp[64];
      fd_path(top, tp, sizeof tp);
      if (top < 0 || mount(NULL, tp, NULL, MS_BIND | MS_REMOUNT | extra, NULL) < 0)
        return fail(err, errno, "mount", m->target, "remount %s", m->target);
    }
  } else {
    const char *data = m->data[0] ? m->data : NULL;
    if (mount(m->source, path, m->fstype, flags, data) < 0)
      return fail(err, errno, "mount", m->target, "mount %s (%s) to %s", m->source, m->fstype, m->target);
  }
  if (m->propagation) {
    cleanup_fd int top = open_in_root(rootfd, m->target, O_PATH, 0);
    char tp[64];
    fd_path(top, tp, sizeof tp);
    if (top < 0 || mount(NULL, tp, NULL, m->propagation, NULL) < 0)
      return fail(err, errno, "mount", m->target, "set propagation of %s", m->target);
  }
  return 0;
}

static int make_device(int rootfd, const struct shim_device *d, struct error *err) {
  const char *base;
  cleanup_fd int parent = open_parent(rootfd, d->path, &base);
  if (parent < 0)
    return fail(err, errno, "device", d->path, "create device %s", d->path);
  mode_t type = d->type == 'b' ? S_IFBLK : S_IFCHR;
  if (mknodat(parent, base, type | (d->mode & 07777), makedev(d->major, d->minor)) < 0) {
    if (errno == EEXIST)
      return 0;
    if (errno != EPERM)
      return fail(err, errno, "device", d->path, "mknod %s", d->path);
    /* No CAP_MKNOD: bind the host's node instead. */
    int f = openat(parent, base, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (f < 0)
      return fail(err, errno, "device", d->path, "create %s", d->path);
    close(f);
    cleanup_fd int t = openat(parent, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    char tp[64];
    fd_path(t, tp, sizeof tp);
    if (t < 0 || mount(d->path, tp, NULL, MS_BIND, NULL) < 0)
      return fail(err, errno, "device", d->path, "bind device %s", d->path);
    return 0;
  }
  if (fchownat(parent, base, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
    return fail(err, errno, "device", d->path, "chown %s", d->path);
  if (fchmodat(parent, base, d->mode & 07777, 0) < 0)
    return fail(err, errno, "device", d->path, "chmod %s", d->path);
  return 0;
}

static int make_symlink(int rootfd, const struct shim_symlink *l, struct error *err) {
  const char *base;
  cleanup_fd int parent = open_parent(rootfd, l->link, &base);
  if (parent < 0 || (symlinkat(l->target, parent, base) < 0 && errno != EEXIST))
    return fail(err, errno, "symlink", l->link, "symlink %s -> %s", l->link, l->target);
  return 0;
}

static unsigned long kept_flags(const char *path) {
  struct statvfs sv;
  unsigned long f = 0;
  if (statvfs(path, &sv) == 0) {
    if (sv.f_flag & ST_NOSUID)
      f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV)
      f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
      f |= MS_NOEXEC;
  }
  return f;
}

static int mask_path(const char *p, struct error *err) {
  struct stat st;
  if (stat(p, &st) < 0)
    return errno == ENOENT || errno == ENOTDIR ? 0 : fail(err, errno, "mask", p, "mask %s", p);
  int r = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL)
                               : mount("/dev/null", p, NULL, MS_BIND, NULL);
  if (r < 0)
    return fail(err, errno, "mask", p, "mask %s", p);
  return 0;
}

static int readonly_path(const char *p, struct error *err) {
  if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
    if (errno == ENOENT)
      return 0;
    return fail(err, errno, "readonly", p, "bind %s", p);
  }
  if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags(p), NULL) < 0)
    return fail(err, errno, "readonly", p, "remount %s read-only", p);
  return 0;
}

int enter_cgroup_namespace(const struct shim_spec *spec, struct error *err) {
  if ((spec->namespaces & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0)
    return fail(err, errno, "namespace", "", "unshare cgroup namespace");
  return 0;
}

int prepare_container(const struct shim_spec *spec, struct error *err) {
  for (size_t i = 0; i < spec->njoins; i++) {
    const struct shim_join *j = &spec->joins[i];
    cleanup_fd int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, (int)j->type) < 0)
      return fail(err, errno, "namespace", j->path, "join namespace %s", j->path);
  }
  if (spec->namespaces & CLONE_NEWUTS && spec->hostname[0] &&
      sethostname(spec->hostname, strlen(spec->hostname)) < 0)
    return fail(err, errno, "hostname", "", "set hostname %s", spec->hostname);
  if (!(spec->namespaces & CLONE_NEWNS))
    return fail(err, EINVAL, "rootfs", spec->rootfs, "run mode needs a mount namespace");

  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    return fail(err, errno, "rootfs", "/", "make / private");
  const char *rootfs = spec->rootfs;
  if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
    return fail(err, errno, "rootfs", rootfs, "bind rootfs %s", rootfs);
  cleanup_fd int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return fail(err, errno, "rootfs", rootfs, "open rootfs %s", rootfs);
  for (size_t i = 0; i < spec->nmounts; i++) {
    if (do_mount(rootfd, &spec->mounts[i], err) < 0)
      return -1;
    /* A mount over the root itself (the image's overlay) hides the directory rootfd holds: reopen it. */
    if (strcmp(spec->mounts[i].target, "/") == 0) {
      int fresh = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (fresh < 0)
        return fail(err, errno, "rootfs", rootfs, "reopen rootfs %s", rootfs);
      close(rootfd);
      rootfd = fresh;
    }
  }
  for (size_t i = 0; i < spec->ndevices; i++)
    if (make_device(rootfd, &spec->devices[i], err) < 0)
      return -1;
  for (size_t i = 0; i < spec->nsymlinks; i++)
    if (make_symlink(rootfd, &spec->symlinks[i], err) < 0)
      return -1;

  if (fchdir(rootfd) < 0)
    return fail(err, errno, "pivot_root", rootfs, "chdir %s", rootfs);
  if (syscall(SYS_pivot_root, ".", ".") < 0)
    return fail(err, errno, "pivot_root", rootfs, "pivot_root %s", rootfs);
  if (umount2(".", MNT_DETACH) < 0)
    return fail(err, errno, "pivot_root", rootfs, "detach old root");
  if (chdir("/") < 0)
    return fail(err, errno, "pivot_root", "/", "chdir /");

  for (size_t i = 0; i < spec->nmasked; i++)
    if (mask_path(spec->masked[i], err) < 0)
      return -1;
  for (size_t i = 0; i < spec->nreadonly; i++)
    if (readonly_path(spec->readonly[i], err) < 0)
      return -1;
  if (spec->readonly_rootfs &&
      mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags("/"), NULL) < 0)
    return fail(err, errno, "rootfs", "/", "remount / read-only");
  return 0;
}

int join_target_namespaces(const struct shim_spec *spec, struct error *err) {
  static const struct {
    const char *name;
    int type;
  } order[] = {{"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
               {"net", CLONE_NEWNET},       {"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS}};
  enum { N = sizeof order / sizeof order[0] };
  int fds[N];
  char path[64];
  int rc = 0;
  for (size_t i = 0; i < N; i++)
    fds[i] = -1;
  if (!spec->has_target_pid)
    return fail(err, EINVAL, "namespace", "", "exec mode needs targetPid");
  for (size_t i = 0; i < N && rc == 0; i++) {
    snprintf(path, sizeof path, "/proc/%u/ns/%s", spec->target_pid, order[i].name);
    fds[i] = open(path, O_RDONLY | O_CLOEXEC);
    if (fds[i] < 0 && errno != ENOENT)
      rc = fail(err, errno, "namespace", path, "open %s", path);
    if (fds[i] >= 0) {
      /* Skip a namespace we already share (e.g. the host network). */
      char self[64];
      struct stat a, b;
      snprintf(self, sizeof self, "/proc/self/ns/%s", order[i].name);
      if (fstat(fds[i], &a) == 0 && stat(self, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
        close(fds[i]);
        fds[i] = -1;
      }
    }
  }
  if (rc == 0)
    rc = join_cgroups(spec, err);
  for (size_t i = 0; i < N && rc == 0; i++) {
    if (fds[i] >= 0 && setns(fds[i], order[i].type) < 0) {
      snprintf(path, sizeof path, "/proc/%u/ns/%s", spec->target_pid, order[i].name);
      rc = fail(err, errno, "namespace", path, "join %s", path);
    }
  }
  for (size_t i = 0; i < N; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  return rc;
}
