/* The monitor: after the ready line, the shim serves its socket, logs output and records the exit. */
#ifndef ABODE_MONITOR_H
#define ABODE_MONITOR_H

#include <stdbool.h>
#include <sys/types.h>

#include "spec.h"

enum proc_state { STATE_CREATED, STATE_RUNNING, STATE_EXITED };

struct client;

struct monitor {
  const struct shim_spec *spec;
  pid_t pid;
  enum proc_state state;
  int listen_fd, sig_fd, sync_fd, log_fd, devnull_fd;
  int out_fd, err_fd; /* read ends of the output pipes; out_fd is the pty master with a terminal */
  int in_fd;          /* stdin pipe's write end, or the pty master */
  int pty_fd;
  bool out_hup;
  int status;
  bool have_status;
  char start_error[1024];
  struct client *clients;
  size_t nclients;
};

_Noreturn void monitor_run(struct monitor *m);

#endif
