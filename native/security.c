#define _GNU_SOURCE
#include "security.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int apply_rlimits(const struct shim_spec *spec, struct error *err) {
  for (size_t i = 0; i < spec->nrlimits; i++) {
    const struct shim_rlimit *r = &spec->rlimits[i];
    struct rlimit cur, want;
    if (getrlimit((int)r->resource, &cur) < 0)
      return fail(err, errno, "rlimit", "", "get rlimit %u", r->resource);
    want.rlim_max = r->hard;
    want.rlim_cur = r->soft;
    if (cur.rlim_max != RLIM_INFINITY && (want.rlim_max == RLIM_INFINITY || want.rlim_max > cur.rlim_max))
      want.rlim_max = cur.rlim_max;
    if (want.rlim_max != RLIM_INFINITY && (want.rlim_cur == RLIM_INFINITY || want.rlim_cur > want.rlim_max))
      want.rlim_cur = want.rlim_max;
    if (setrlimit((int)r->resource, &want) < 0)
      return fail(err, errno, "rlimit", "", "set rlimit %u", r->resource);
  }
  return 0;
}

int apply_oom_score_adj(const struct shim_spec *spec, struct error *err) {
  if (!spec->has_oom_score_adj)
    return 0;
  char v[16];
  snprintf(v, sizeof v, "%d", spec->oom_score_adj);
  if (write_file("/proc/self/oom_score_adj", v, err) < 0) {
    err->errnum = errno;
    snprintf(err->step, sizeof err->step, "oom_score_adj");
    return -1;
  }
  return 0;
}

int apply_user_and_caps(const struct shim_spec *spec, struct error *err) {
  for (int cap = 0; cap < 64; cap++) {
    if (spec->cap_bounding & (1ULL << cap))
      continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL)
        break; /* past the kernel's last capability */
      return fail(err, errno, "capabilities", "", "drop bounding capability %d", cap);
    }
  }
  gid_t gids[256];
  size_t n = spec->ngids < 256 ? spec->ngids : 256;
  for (size_t i = 0; i < n; i++)
    gids[i] = spec->gids[i];
  if (setgroups(n, gids) < 0)
    return fail(err, errno, "user", "", "setgroups");
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
    return fail(err, errno, "user", "", "keep capabilities");
  if (setresgid(spec->gid, spec->gid, spec->gid) < 0)
    return fail(err, errno, "user", "", "setgid %u", spec->gid);
  if (setresuid(spec->uid, spec->uid, spec->uid) < 0)
    return fail(err, errno, "user", "", "setuid %u", spec->uid);
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
    return fail(err, errno, "user", "", "keep capabilities");

  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  for (int i = 0; i < 2; i++) {
    data[i].effective = (uint32_t)(spec->cap_effective >> (32 * i));
    data[i].permitted = (uint32_t)(spec->cap_permitted >> (32 * i));
    data[i].inheritable = (uint32_t)(spec->cap_inheritable >> (32 * i));
  }
  if (syscall(SYS_capset, &hdr, data) < 0)
    return fail(err, errno, "capabilities", "", "capset");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    return fail(err, errno, "capabilities", "", "clear ambient capabilities");
  for (int cap = 0; cap < 64; cap++)
    if ((spec->cap_ambient & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
      return fail(err, errno, "capabilities", "", "raise ambient capability %d", cap);
  return 0;
}

int apply_no_new_privs(const struct shim_spec *spec, struct error *err) {
  if (spec->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return fail(err, errno, "no_new_privs", "", "set no_new_privs");
  return 0;
}

int apply_seccomp(const struct shim_spec *spec, struct error *err) {
  if (!spec->has_seccomp)
    return 0;
  struct sock_fprog prog = {.len = (unsigned short)(spec->seccomp_len / 8),
                            .filter = (struct sock_filter *)spec->seccomp};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
    return fail(err, errno, "seccomp", "", "load seccomp filter");
  return 0;
}
