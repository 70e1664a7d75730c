/* The guest's early boot as PID 1: pseudo file systems, modules, the agent port, the root disk. */
#define _GNU_SOURCE
#include "agent.h"

#include <dirent.h>
#include <linux/input.h>
#include <linux/random.h>
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

ssize_t read_small(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0)
    return -1;
  buf[n] = 0;
  return n;
}

void boot_open_modules(const char *list, struct module_set *set) {
  char names[1024];
  set->n = 0;
  if (read_small(list, names, sizeof names) <= 0)
    return;
  unlink(list); /* the initramfs's pages go back with boot_free_initramfs */
  for (char *save = NULL, *name = strtok_r(names, "\n", &save); name && set->n < MAX_MODULES;
       name = strtok_r(NULL, "\n", &save)) {
    char path[256], *params = strchr(name, ' ');
    if (params)
      *params++ = 0;
    snprintf(path, sizeof path, "/lib/modules/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      logf_console("open %s: %s", path, strerror(errno));
      continue;
    }
    snprintf(set->params[set->n], sizeof set->params[set->n], "%s", params ? params : "");
    set->fds[set->n++] = fd;
  }
}

void boot_load_modules(struct module_set *set) {
  for (size_t i = 0; i < set->n; i++) {
    if (syscall(SYS_finit_module, set->fds[i], set->params[i], 0) < 0 && errno != EEXIST)
      logf_console("load a module: %s", strerror(errno));
    close(set->fds[i]);
  }
  set->n = 0;
}

/* Closes the set's files unloaded (another process loads them). */
static void drop_modules(struct module_set *set) {
  for (size_t i = 0; i < set->n; i++)
    close(set->fds[i]);
  set->n = 0;
}

void boot_modules(const char *list) {
  struct module_set set;
  boot_open_modules(list, &set);
  boot_load_modules(&set);
}

/*
 * Free page reporting gives the host back free chunks of 2^order pages, 2 MiB by default: the kernel's
 * small free chunks would stay in the host's memory. 6.1 resets the order when the balloon registers,
 * so it is set (through `order_fd`, opened before the root switch moves /sys) after the balloon loads.
 */
static void report_small_free_pages(int order_fd) {
  if (order_fd < 0)
    return;
  (void)!write(order_fd, "0", 1);
  close(order_fd);
}

static int open_reporting_order(void) {
  return open("/sys/module/page_reporting/parameters/page_reporting_order", O_WRONLY | O_CLOEXEC);
}

/* Loads the late modules; with the balloon in, free page reporting goes down to single pages. */
static void load_late_modules(struct module_set *late, int order_fd) {
  boot_load_modules(late);
  report_small_free_pages(order_fd);
}

void boot_late_modules(struct module_set *late) {
  load_late_modules(late, open_reporting_order());
}

bool boot_is_template(void) {
  char line[4096];
  if (read_small("/proc/cmdline", line, sizeof line) <= 0)
    return false;
  for (char *save = NULL, *arg = strtok_r(line, " \n", &save); arg; arg = strtok_r(NULL, " \n", &save))
    if (strcmp(arg, "abode.template") == 0)
      return true;
  return false;
}

void agent_set_clock(const char *v) {
  char *dot;
  struct timespec ts = {.tv_sec = (time_t)strtoll(v, &dot, 10)};
  if (*dot == '.')
    ts.tv_nsec = strtol(dot + 1, NULL, 10);
  if (ts.tv_sec > 0 && ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L && clock_settime(CLOCK_REALTIME, &ts) < 0)
    logf_console("set the clock: %s", strerror(errno));
}

void boot_resume(const char *data, size_t len) {
  boot_add_entropy(data, len < 64 ? len : 64);
  if (len > 64 + 2 && data[64] == 'C' && data[65] == '=' && data[len - 1] == 0)
    agent_set_clock(data + 66);
}

void boot_add_entropy(const void *seed, size_t len) {
  struct {
    int entropy_count;
    int buf_size;
    unsigned char buf[256];
  } pool;
  if (len > sizeof pool.buf)
    len = sizeof pool.buf;
  pool.entropy_count = (int)len * 8;
  pool.buf_size = (int)len;
  memcpy(pool.buf, seed, len);
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0 || ioctl(fd, RNDADDENTROPY, &pool) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
    logf_console("reseed the random number generator: %s", strerror(errno));
  if (fd >= 0)
    close(fd);
}

int boot_open_power_button(void) {
  DIR *d = opendir("/dev/input");
  struct dirent *e;
  int found = -1;
  while (d && found < 0 && (e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "event", 5) != 0)
      continue;
    char path[300], name[64] = {0};
    snprintf(path, sizeof path, "/dev/input/%s", e->d_name);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
      continue;
    if (ioctl(fd, EVIOCGNAME(sizeof name - 1), name) >= 0 && strcmp(name, "Power Button") == 0)
      found = fd;
    else
      close(fd);
  }
  if (d)
    closedir(d);
  return found;
}

bool boot_power_pressed(int fd) {
  struct input_event ev;
  bool pressed = false;
  while (read(fd, &ev, sizeof ev) == (ssize_t)sizeof ev)
    if (ev.type == EV_KEY && ev.code == KEY_POWER && ev.value == 1)
      pressed = true;
  return pressed;
}

/* Removes the initramfs's files once every module is open or loaded: the old root stays in memory
 * under the new one, and the guest gets those pages back (the running /init keeps its own). */
void boot_free_initramfs(void) {
  unlink("/init"); /* the module lists went as they were read */
  DIR *d = opendir("/lib/modules");
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      unlinkat(dirfd(d), e->d_name, 0);
  if (d)
    closedir(d);
}

/* Finds the virtio-serial port named AGENT_PORT_NAME and opens it; waits up to timeout_ms. */
int boot_open_port(long timeout_ms) {
  for (long waited = 0; waited <= timeout_ms; waited += 5) {
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      char path[300], name[64];
      snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
      ssize_t n = read_small(path, name, sizeof name);
      if (n < 0)
        continue;
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

/* The root disk's driver loaded and the disk mounted on /newroot; 0, or an errno with err filled. */
static int mount_root(const char *device, struct module_set *root, char *err, size_t errlen) {
  boot_load_modules(root);
  if (wait_for(device, 5000) < 0) {
    snprintf(err, errlen, "root disk %s did not appear", device);
    return ENODEV;
  }
  mkdir("/newroot", 0755);
  if (mount(device, "/newroot", "ext4", MS_NOATIME, "noinit_itable") < 0) {
    int e = errno;
    snprintf(err, errlen, "mount %s: %s", device, strerror(e));
    return e;
  }
  return 0;
}

struct root_result {
  int errnum;
  char message[500];
};

/*
 * The root disk is made ready by a child, beside the agent port's driver and READY in this process:
 * under TCG each costs tens of milliseconds that the second vCPU can take. The child then loads the
 * late modules (the memory balloon). Returns the fd boot_switch_root reads the outcome from.
 */
int boot_root_async(const char *device, struct module_set *root, struct module_set *late, pid_t *child) {
  int result[2];
  if (pipe2(result, O_CLOEXEC) < 0)
    return -1;
  pid_t pid = fork();
  *child = pid;
  if (pid > 0) {
    close(result[1]);
    drop_modules(root);
    drop_modules(late);
    return result[0];
  }
  /* the child, or this process when fork failed; the parent moves /sys once the root is mounted */
  int order_fd = late->n ? open_reporting_order() : -1;
  struct root_result r = {0};
  r.errnum = mount_root(device, root, r.message, sizeof r.message);
  (void)!write(result[1], &r, sizeof r); /* fits the pipe's buffer: never blocks */
  close(result[1]);
  load_late_modules(late, order_fd);
  if (pid == 0)
    _exit(0);
  return result[0];
}

/* Waits for the root disk (boot_root_async) and makes it the root; the pseudo file systems move along. */
int boot_switch_root(int root_fd, char *err, size_t errlen) {
  if (root_fd < 0) {
    snprintf(err, errlen, "cannot prepare the root disk: %s", strerror(errno));
    return -1;
  }
  struct root_result r = {.errnum = EIO, .message = "the root disk's preparation ended without a word"};
  while (read(root_fd, &r, sizeof r) < 0 && errno == EINTR) {
  }
  close(root_fd);
  if (r.errnum != 0) {
    snprintf(err, errlen, "%s", r.message);
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
