/* The monitor: after the ready line, the shim serves its socket, logs output and records the exit. */
#ifndef ABODE_MONITOR_H
#define ABODE_MONITOR_H

#include <stdbool.h>
#include <sys/types.h>

#include "spec.h"
#include "util.h"

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
  /* agent mode (spec->agent): frames with the guest agent over the child's stdio */
  struct buf agent_in, agent_out;
  bool agent_ready;
  long long spawned_ms, boot_ms;
  bool guest_exited;
  int guest_code, guest_signal;
  long long reclaim_at; /* ms: page the reclaim files out of the child (spec.h); 0 none */
  long long start_deadline; /* ms: a VM whose guest has not answered START by then is ended; 0 none */
  long long kill_at; /* ms: SIGKILL the child (QEMU) that outlives the guest's exit; 0 none */
  uint16_t next_session;
};

_Noreturn void monitor_run(struct monitor *m);
/* Agent mode: waits for the agent's READY (relaying output meanwhile); on failure kills the child. */
int monitor_agent_boot(struct monitor *m, struct error *err);
/* Agent mode: sends START now (a spec without holdUntilStart). */
void monitor_agent_start(struct monitor *m);

#endif
