/* The guest's early boot as PID 1: pseudo file systems, modules, the agent port, the root disk. */
#define _GNU_SOURCE
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void logf_console(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n > sizeof line - 2)
    n = sizeof line - 2;
  line[n++] = '\n';
  (void)!write(STDERR_FILENO, "abode-agent: ", 13);
  (void)!write(STDERR_FILENO, line, (size_t)n);
}

static void sleep_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int mount_at(const char *source, const char *target, const char *fstype, unsigned long flags,
                    const char *data) {
  mkdir(target, 0755);
  if (mount(source, target, fstype, flags, data) < 0 && errno != EBUSY) {
    logf_console("mount %s on %s: %s", fstype, target, strerror(errno));
    return -1;
  }
  return 0;
}

void boot_mounts(void) {
  mount_at("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mount_at("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_at("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd >= 0) {
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
      close(fd);
  }
}

/* Loads every module /modules lists (one file name of /lib/modules per line, in dependency order). */
void boot_modules(void) {
  char list[4096];
  int fd = open("/modules", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  ssize_t n = read(fd, list, sizeof list - 1);
  close(fd);
  if (n <= 0)
    return;
  list[n] = 0;
  for (char *save = NULL, *name = strtok_r(list, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
    char path[256];
    snprintf(path, sizeof path, "/lib/modules/%s", name);
    int mfd = open(path, O_RDONLY | O_CLOEXEC);
    if (mfd < 0) {
      logf_console("open %s: %s", path, strerror(errno));
      continue;
    }
    if (syscall(SYS_finit_module, mfd, "", 0) < 0 && errno != EEXIST)
      logf_console("load %s: %s", name, strerror(errno));
    close(mfd);
  }
}

/* The on-demand modules (/modules.virtiofs), opened before the root switch hides the initramfs. */
#define MAX_LAZY 8
static int lazy_fds[MAX_LAZY];
static size_t nlazy;

void boot_open_lazy_modules(void) {
  char list[1024];
  int fd = open("/modules.virtiofs", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  ssize_t n = read(fd, list, sizeof list - 1);
  close(fd);
  if (n <= 0)
    return;
  list[n] = 0;
  for (char *save = NULL, *name = strtok_r(list, "\n", &save); name && nlazy < MAX_LAZY;
       name = strtok_r(NULL, "\n", &save)) {
    char path[256];
    snprintf(path, sizeof path, "/lib/modules/%s", name);
    int mfd = open(path, O_RDONLY | O_CLOEXEC);
    if (mfd >= 0)
      lazy_fds[nlazy++] = mfd;
  }
}

void boot_load_lazy_modules(void) {
  for (size_t i = 0; i < nlazy; i++) {
    if (syscall(SYS_finit_module, lazy_fds[i], "", 0) < 0 && errno != EEXIST)
      logf_console("load an on-demand module: %s", strerror(errno));
    close(lazy_fds[i]);
  }
  nlazy = 0;
}

/* Finds the virtio-serial port named AGENT_PORT_NAME and opens it; waits up to timeout_ms. */
int boot_open_port(long timeout_ms) {
  for (long waited = 0; waited <= timeout_ms; waited += 5) {
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      char path[300], name[64] = {0};
      snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        continue;
      ssize_t n = read(fd, name, sizeof name - 1);
      close(fd);
      if (n > 0 && name[n - 1] == '\n')
        name[n - 1] = 0;
      if (strcmp(name, AGENT_PORT_NAME) != 0)
        continue;
      snprintf(path, sizeof path, "/dev/%s", e->d_name);
      int port = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
      if (port >= 0) {
        closedir(d);
        return port;
      }
    }
    if (d)
      closedir(d);
    sleep_ms(5);
  }
  return -1;
}

static int wait_for(const char *path, long timeout_ms) {
  struct stat st;
  for (long waited = 0; waited <= timeout_ms; waited += 5) {
    if (stat(path, &st) == 0)
      return 0;
    sleep_ms(5);
  }
  return -1;
}

/* Mounts the root disk and makes it the root; the pseudo file systems move along. */
int boot_switch_root(const char *device, char *err, size_t errlen) {
  if (wait_for(device, 5000) < 0) {
    snprintf(err, errlen, "root disk %s did not appear", device);
    return -1;
  }
  mkdir("/newroot", 0755);
  if (mount(device, "/newroot", "ext4", MS_NOATIME, "noinit_itable") < 0) {
    snprintf(err, errlen, "mount %s: %s", device, strerror(errno));
    return -1;
  }
  const char *moved[] = {"/dev", "/proc", "/sys"};
  for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
    char target[64];
    snprintf(target, sizeof target, "/newroot%s", moved[i]);
    mkdir(target, 0755);
    if (mount(moved[i], target, NULL, MS_MOVE, NULL) < 0)
      logf_console("move %s: %s", moved[i], strerror(errno));
  }
  if (chdir("/newroot") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0) {
    snprintf(err, errlen, "switch root: %s", strerror(errno));
    return -1;
  }
  mount_at("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
  unlink("/dev/ptmx");
  if (symlink("pts/ptmx", "/dev/ptmx") < 0)
    logf_console("symlink /dev/ptmx: %s", strerror(errno));
  mount_at("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777");
  mkdir("/tmp", 01777);
  if (symlink("/proc/self/fd", "/dev/fd") < 0 && errno != EEXIST)
    logf_console("symlink /dev/fd: %s", strerror(errno));
  return 0;
}

/* Brings the loopback interface up. */
void boot_loopback(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    return;
  struct ifreq ifr = {0};
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    (void)!ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  close(s);
}
