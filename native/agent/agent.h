/* abode-agent: the guest's PID 1 (boot.c: early boot; session.c: processes; main.c: the channel loop). */
#ifndef ABODE_AGENT_H
#define ABODE_AGENT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../agent-protocol.h"

void logf_console(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void boot_mounts(void);
/* Reads a small file (/proc, /sys, a list) into buf, NUL-terminated; its length, or -1. */
ssize_t read_small(const char *path, char *buf, size_t size);

#define MAX_MODULES 8
/* Module files opened ahead (from the initramfs, before the root switch hides it), loaded later. */
struct module_set {
  int fds[MAX_MODULES];
  char params[MAX_MODULES][64];
  size_t n;
};
/* Opens the modules a list file in the initramfs names (a line each, in load order: the file's name
 * in /lib/modules, then optionally a space and the module's parameters). */
void boot_open_modules(const char *list, struct module_set *set);
/* Loads and closes the set's modules. */
void boot_load_modules(struct module_set *set);
/* Loads the modules a list names, now. */
void boot_modules(const char *list);
/* Makes the root disk ready in a child (`*child`, which then loads `late`); the fd boot_switch_root reads. */
int boot_root_async(const char *device, struct module_set *root, struct module_set *late, pid_t *child);
/* The ACPI power button's input device (QMP system_powerdown presses it), or -1 while there is none. */
int boot_open_power_button(void);
/* Reads the button's pending events; true when the power key was pressed. */
bool boot_power_pressed(int fd);
/* Loads the late modules (the memory balloon) now, and has it report small free chunks too. */
void boot_late_modules(struct module_set *late);
/* True in a template's boot (kernel argument abode.template): the host snapshots it after READY and
 * restores copies of it, each of which gets RESUME before its root disk is touched. */
bool boot_is_template(void);
/* Sets the guest's clock from "<seconds>.<nanoseconds>" (START's and RESUME's C= entry): a restored
 * template's clock stands where the snapshot left it, and a booted guest's RTC has whole seconds only. */
void agent_set_clock(const char *v);
/* A RESUME's payload: its 64 random bytes reseed the RNG, its C= entry sets the clock. */
void boot_resume(const char *data, size_t len);
/* Adds host randomness to the kernel's entropy pool and reseeds (RNDADDENTROPY, RNDRESEEDCRNG). */
void boot_add_entropy(const void *seed, size_t len);
void boot_free_initramfs(void);
int boot_open_port(long timeout_ms);
int boot_switch_root(int root_fd, char *err, size_t errlen);
void boot_loopback(void);
/* virtio-fs's modules: opened at boot, loaded when a START asks for mounts. */
extern struct module_set virtiofs_modules;

/* Writes one frame to the host (blocking; the channel is the agent's only output). */
void send_frame(int type, uint16_t session, const void *data, size_t len);

#define MAX_SESSIONS 32

struct session {
  bool used;
  uint16_t id;
  pid_t pid;
  int in_fd;  /* stdin pipe (write end), the pty master, or -1 */
  int out_fd; /* stdout pipe or the pty master, -1 at EOF */
  int err_fd; /* stderr pipe, -1 at EOF or with a terminal */
  int pty_fd;
  bool exited;
  int status;
  long long exited_at; /* ms, to stop draining output that background processes keep open */
};

extern struct session sessions[MAX_SESSIONS];

/* Set by session 0's START ("D=1"): the host throws the root disk away after the exit (--rm), so
 * powering off needs no sync. */
extern bool discard_root;

struct session *session_find(uint16_t id);
/* Starts a session's process from a START payload; reports STARTED or ERROR+EXIT itself. */
void session_start(uint16_t id, const char *payload, size_t len, const char *root_error);
void session_input(struct session *s, int type, const char *data, size_t len);
/* Reads one chunk of a session's output into frames; marks EOF. */
void session_pump(struct session *s, int fd);
/* Sends EXIT once the process has exited and its output is drained; frees the slot. Returns true when done. */
bool session_finish(struct session *s, long long now_ms, bool force);
long long monotonic_ms(void);

#endif
