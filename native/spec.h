/* The decoded ShimSpec (protocol.h describes the encoding). */
#ifndef ABODE_SPEC_H
#define ABODE_SPEC_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "util.h"

struct shim_mount {
  char *source, *target, *fstype, *data;
  uint32_t flags, propagation;
};

struct shim_device {
  char *path;
  char type;
  uint32_t major, minor, mode, uid, gid;
};

struct shim_rlimit {
  uint32_t resource;
  uint64_t soft, hard;
};

struct shim_join {
  uint32_t type;
  char *path;
};

struct shim_symlink {
  char *target, *link;
};

struct shim_spec {
  int mode; /* 0 run, 1 exec */
  char *id;
  char **args; /* NULL-terminated */
  size_t nargs;
  char **env; /* NULL-terminated */
  size_t nenv;
  char *cwd;
  uint32_t uid, gid;
  uint32_t *gids;
  size_t ngids;
  bool terminal, open_stdin, no_new_privs, init, readonly_rootfs, hold;
  uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
  unsigned char *seccomp;
  size_t seccomp_len;
  bool has_seccomp;
  struct shim_rlimit *rlimits;
  size_t nrlimits;
  int32_t oom_score_adj;
  bool has_oom_score_adj;
  uint32_t namespaces;
  struct shim_join *joins;
  size_t njoins;
  char *rootfs;
  struct shim_mount *mounts;
  size_t nmounts;
  struct shim_device *devices;
  size_t ndevices;
  struct shim_symlink *symlinks;
  size_t nsymlinks;
  char **masked;
  size_t nmasked;
  char **readonly;
  size_t nreadonly;
  char *hostname;
  char **cgroup_procs;
  size_t ncgroup_procs;
  uint32_t target_pid;
  bool has_target_pid;
  char *log_path, *exit_path, *socket_path;
  uint8_t agent; /* 0 none, 1 vm, 2 session (protocol.h) */
  unsigned char *agent_start;
  size_t agent_start_len;
  uint32_t boot_timeout_ms;
  char **reclaim_files; /* paged out of the child once the agent is READY */
  bool agent_resume;     /* the child restores a template: RESUME goes first, READY comes after it */
  size_t nreclaim_files;
};

int spec_decode(const unsigned char *data, size_t len, struct shim_spec *spec, struct error *err);
int spec_load(const char *path, struct shim_spec *spec, struct error *err);
/* The spec as JSON in ShimSpec's shape (u64 as decimal strings, seccomp as hex), for tests. */
void spec_dump_json(const struct shim_spec *spec, struct buf *out);

#endif
