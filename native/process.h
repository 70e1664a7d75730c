/* The child side: from clone/fork to execve, reporting over a SOCK_SEQPACKET sync socket. */
#ifndef ABODE_PROCESS_H
#define ABODE_PROCESS_H

#include <stdint.h>

#include "spec.h"

enum sync_kind {
  SYNC_ERROR = 1,   /* preparation failed: err */
  SYNC_PID,         /* exec mode: the host pid of the process (sent by the intermediate child) */
  SYNC_PTY,         /* the pty master, as SCM_RIGHTS */
  SYNC_PREPARED,    /* ready to exec (waits for a start byte when holding) */
  SYNC_EXEC_FAILED, /* execve failed: err */
};

struct sync_msg {
  uint32_t kind;
  int32_t pid;
  struct error err;
};

/* The fds a child inherits from the shim. */
struct child_ctx {
  const struct shim_spec *spec;
  int sync_fd;
  int stdin_fd, stdout_fd, stderr_fd; /* without a terminal */
  int devnull_fd;
};

_Noreturn void child_run(struct child_ctx *c);
_Noreturn void child_exec(struct child_ctx *c);

int sync_send(int fd, uint32_t kind, int32_t pid, const struct error *err, int pass_fd);
/* Receives one message (and a passed fd, or -1). Returns 0 on EOF, 1 on a message, -1 on error. */
int sync_recv(int fd, struct sync_msg *msg, int *passed_fd);

#endif
