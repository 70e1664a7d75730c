/* The container's environment: namespaces, mounts, devices, pivot_root. */
#ifndef ABODE_CONTAINER_H
#define ABODE_CONTAINER_H

#include "spec.h"

/* Writes "0" into every cgroup.procs file of the spec. */
int join_cgroups(const struct shim_spec *spec, struct error *err);
/* Writes pid into every cgroup.procs file of the spec. */
int place_in_cgroups(const struct shim_spec *spec, pid_t pid, struct error *err);
/* unshare(CLONE_NEWCGROUP) when the spec asks for it: after the cgroups are joined. */
int enter_cgroup_namespace(const struct shim_spec *spec, struct error *err);
/* run mode, in the cloned child: cgroup ns, joined namespaces, the root file system up to read-only /. */
int prepare_container(const struct shim_spec *spec, struct error *err);
/* exec mode: joins targetPid's cgroups' namespaces (cgroup, ipc, uts, net, pid, mnt). */
int join_target_namespaces(const struct shim_spec *spec, struct error *err);

#endif
