/* The process's limits and privileges: rlimits, oom_score_adj, user, capabilities, seccomp. */
#ifndef ABODE_SECURITY_H
#define ABODE_SECURITY_H

#include "spec.h"

/* Sets rlimits, clamped to the current hard limits (no CAP_SYS_RESOURCE needed). */
int apply_rlimits(const struct shim_spec *spec, struct error *err);
int apply_oom_score_adj(const struct shim_spec *spec, struct error *err);
/* Bounding set, groups, gid, uid (keeping capabilities), then capset and ambient. */
int apply_user_and_caps(const struct shim_spec *spec, struct error *err);
int apply_no_new_privs(const struct shim_spec *spec, struct error *err);
int apply_seccomp(const struct shim_spec *spec, struct error *err);

#endif
