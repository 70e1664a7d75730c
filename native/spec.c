#define _GNU_SOURCE
#include "spec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static void *xrealloc(void *p, size_t n) {
  void *r = realloc(p, n ? n : 1);
  if (r == NULL)
    abort();
  return r;
}

/* Appends one element of size sz to *arr of *n elements, returns the new slot (zeroed). */
static void *push(void *arr_p, size_t *n, size_t sz) {
  void **arr = arr_p;
  *arr = xrealloc(*arr, (*n + 1) * sz);
  void *slot = (char *)*arr + *n * sz;
  memset(slot, 0, sz);
  (*n)++;
  return slot;
}

static int str_of(const unsigned char *v, size_t len, char **out, struct error *err) {
  if (memchr(v, 0, len) != NULL)
    return fail(err, EINVAL, "spec", "", "spec: string contains NUL");
  char *s = xrealloc(NULL, len + 1);
  memcpy(s, v, len);
  s[len] = 0;
  *out = s;
  return 0;
}

/* Splits v into exactly n NUL-separated strings. */
static int split_nul(const unsigned char *v, size_t len, size_t n, char **outs, struct error *err) {
  size_t start = 0, k = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i == len || v[i] == 0) {
      if (k >= n)
        return fail(err, EINVAL, "spec", "", "spec: too many fields in record");
      char *s = xrealloc(NULL, i - start + 1);
      memcpy(s, v + start, i - start);
      s[i - start] = 0;
      outs[k++] = s;
      start = i + 1;
    }
  }
  if (k != n)
    return fail(err, EINVAL, "spec", "", "spec: too few fields in record");
  return 0;
}

static int push_str(char ***list, size_t *n, const unsigned char *v, size_t len, struct error *err) {
  char **slot = push(list, n, sizeof(char *));
  return str_of(v, len, slot, err);
}

#define NEED(sz)                                                                                           \
  do {                                                                                                     \
    if (len != (sz))                                                                                       \
      return fail(err, EINVAL, "spec", "", "spec: record %u has length %zu, want %zu", tag, len,           \
                  (size_t)(sz));                                                                           \
  } while (0)

static int decode_record(struct shim_spec *s, unsigned tag, const unsigned char *v, size_t len,
                         struct error *err) {
  switch (tag) {
  case TAG_MODE:
    NEED(1);
    if (v[0] > 1)
      return fail(err, EINVAL, "spec", "", "spec: bad mode %u", v[0]);
    s->mode = v[0];
    return 0;
  case TAG_ID:
    free(s->id);
    return str_of(v, len, &s->id, err);
  case TAG_ARG:
    return push_str(&s->args, &s->nargs, v, len, err);
  case TAG_ENV:
    return push_str(&s->env, &s->nenv, v, len, err);
  case TAG_CWD:
    free(s->cwd);
    return str_of(v, len, &s->cwd, err);
  case TAG_UID:
    NEED(4);
    s->uid = le32(v);
    return 0;
  case TAG_GID:
    NEED(4);
    s->gid = le32(v);
    return 0;
  case TAG_ADDITIONAL_GID: {
    NEED(4);
    uint32_t *g = push(&s->gids, &s->ngids, sizeof(uint32_t));
    *g = le32(v);
    return 0;
  }
  case TAG_TERMINAL:
  case TAG_OPEN_STDIN:
  case TAG_NO_NEW_PRIVS:
  case TAG_INIT:
  case TAG_READONLY_ROOTFS:
  case TAG_AGENT_RESUME:
  case TAG_HOLD: {
    NEED(1);
    bool b = v[0] != 0;
    if (tag == TAG_TERMINAL)
      s->terminal = b;
    else if (tag == TAG_OPEN_STDIN)
      s->open_stdin = b;
    else if (tag == TAG_NO_NEW_PRIVS)
      s->no_new_privs = b;
    else if (tag == TAG_INIT)
      s->init = b;
    else if (tag == TAG_READONLY_ROOTFS)
      s->readonly_rootfs = b;
    else if (tag == TAG_AGENT_RESUME)
      s->agent_resume = b;
    else
      s->hold = b;
    return 0;
  }
  case TAG_CAPABILITIES:
    NEED(40);
    s->cap_bounding = le64(v);
    s->cap_effective = le64(v + 8);
    s->cap_permitted = le64(v + 16);
    s->cap_inheritable = le64(v + 24);
    s->cap_ambient = le64(v + 32);
    return 0;
  case TAG_SECCOMP:
    if (len % 8 != 0 || len == 0 || len / 8 > 0xffff)
      return fail(err, EINVAL, "spec", "", "spec: seccomp program of %zu bytes", len);
    free(s->seccomp);
    s->seccomp = xrealloc(NULL, len);
    memcpy(s->seccomp, v, len);
    s->seccomp_len = len;
    s->has_seccomp = true;
    return 0;
  case TAG_RLIMIT: {
    NEED(20);
    struct shim_rlimit *r = push(&s->rlimits, &s->nrlimits, sizeof *r);
    r->resource = le32(v);
    r->soft = le64(v + 4);
    r->hard = le64(v + 12);
    return 0;
  }
  case TAG_OOM_SCORE_ADJ:
    NEED(4);
    s->oom_score_adj = (int32_t)le32(v);
    s->has_oom_score_adj = true;
    return 0;
  case TAG_NAMESPACES:
    NEED(4);
    s->namespaces = le32(v);
    return 0;
  case TAG_JOIN_NAMESPACE: {
    if (len < 4)
      return fail(err, EINVAL, "spec", "", "spec: short join record");
    struct shim_join *j = push(&s->joins, &s->njoins, sizeof *j);
    j->type = le32(v);
    return str_of(v + 4, len - 4, &j->path, err);
  }
  case TAG_ROOTFS:
    free(s->rootfs);
    return str_of(v, len, &s->rootfs, err);
  case TAG_MOUNT: {
    if (len < 8)
      return fail(err, EINVAL, "spec", "", "spec: short mount record");
    struct shim_mount *m = push(&s->mounts, &s->nmounts, sizeof *m);
    m->flags = le32(v);
    m->propagation = le32(v + 4);
    char *f[4] = {0};
    if (split_nul(v + 8, len - 8, 4, f, err) < 0) {
      for (int i = 0; i < 4; i++)
        free(f[i]);
      s->nmounts--;
      return -1;
    }
    m->source = f[0];
    m->target = f[1];
    m->fstype = f[2];
    m->data = f[3];
    return 0;
  }
  case TAG_DEVICE: {
    if (len < 24)
      return fail(err, EINVAL, "spec", "", "spec: short device record");
    if (v[0] != 'c' && v[0] != 'b')
      return fail(err, EINVAL, "spec", "", "spec: bad device type %u", v[0]);
    struct shim_device *d = push(&s->devices, &s->ndevices, sizeof *d);
    d->type = (char)v[0];
    d->major = le32(v + 4);
    d->minor = le32(v + 8);
    d->mode = le32(v + 12);
    d->uid = le32(v + 16);
    d->gid = le32(v + 20);
    return str_of(v + 24, len - 24, &d->path, err);
  }
  case TAG_SYMLINK: {
    char *f[2] = {0};
    if (split_nul(v, len, 2, f, err) < 0) {
      free(f[0]);
      free(f[1]);
      return -1;
    }
    struct shim_symlink *l = push(&s->symlinks, &s->nsymlinks, sizeof *l);
    l->target = f[0];
    l->link = f[1];
    return 0;
  }
  case TAG_MASKED_PATH:
    return push_str(&s->masked, &s->nmasked, v, len, err);
  case TAG_READONLY_PATH:
    return push_str(&s->readonly, &s->nreadonly, v, len, err);
  case TAG_HOSTNAME:
    free(s->hostname);
    return str_of(v, len, &s->hostname, err);
  case TAG_CGROUP_PROCS:
    return push_str(&s->cgroup_procs, &s->ncgroup_procs, v, len, err);
  case TAG_TARGET_PID:
    NEED(4);
    s->target_pid = le32(v);
    s->has_target_pid = true;
    return 0;
  case TAG_LOG_PATH:
    free(s->log_path);
    return str_of(v, len, &s->log_path, err);
  case TAG_EXIT_PATH:
    free(s->exit_path);
    return str_of(v, len, &s->exit_path, err);
  case TAG_SOCKET_PATH:
    free(s->socket_path);
    return str_of(v, len, &s->socket_path, err);
  case TAG_AGENT:
    NEED(1);
    if (v[0] > 2)
      return fail(err, EINVAL, "spec", "", "spec: bad agent mode %u", v[0]);
    s->agent = v[0];
    return 0;
  case TAG_AGENT_START:
    if (len > (1u << 20))
      return fail(err, EINVAL, "spec", "", "spec: agent start payload of %zu bytes", len);
    free(s->agent_start);
    s->agent_start = xrealloc(NULL, len ? len : 1);
    memcpy(s->agent_start, v, len);
    s->agent_start_len = len;
    return 0;
  case TAG_BOOT_TIMEOUT:
    NEED(4);
    s->boot_timeout_ms = le32(v);
    return 0;
  case TAG_RECLAIM_FILE:
    return push_str(&s->reclaim_files, &s->nreclaim_files, v, len, err);
  default:
    return fail(err, EINVAL, "spec", "", "spec: unknown tag %u", tag);
  }
}


int spec_decode(const unsigned char *data, size_t len, struct shim_spec *s, struct error *err) {
  memset(s, 0, sizeof *s);
  if (len < 8 || memcmp(data, SHIM_MAGIC, 4) != 0)
    return fail(err, EINVAL, "spec", "", "spec: bad magic");
  uint32_t version = le32(data + 4);
  if (version != SHIM_PROTOCOL_VERSION)
    return fail(err, EINVAL, "spec", "", "spec: protocol version %u, this shim speaks %u", version,
                SHIM_PROTOCOL_VERSION);
  size_t off = 8;
  while (off < len) {
    if (len - off < 6)
      return fail(err, EINVAL, "spec", "", "spec: truncated record header at %zu", off);
    unsigned tag = le16(data + off);
    uint32_t rlen = le32(data + off + 2);
    off += 6;
    if (rlen > len - off)
      return fail(err, EINVAL, "spec", "", "spec: truncated record %u at %zu", tag, off);
    if (decode_record(s, tag, data + off, rlen, err) < 0)
      return -1;
    off += rlen;
  }
  /* NULL-terminate the argv/env lists; fill absent strings with "". */
  s->args = xrealloc(s->args, (s->nargs + 1) * sizeof(char *));
  s->args[s->nargs] = NULL;
  s->env = xrealloc(s->env, (s->nenv + 1) * sizeof(char *));
  s->env[s->nenv] = NULL;
  char **strs[] = {&s->id, &s->cwd, &s->rootfs, &s->hostname, &s->log_path, &s->exit_path, &s->socket_path};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
    if (*strs[i] == NULL) {
      *strs[i] = xrealloc(NULL, 1);
      (*strs[i])[0] = 0;
    }
  if (s->nargs == 0)
    return fail(err, EINVAL, "spec", "", "spec: no args");
  return 0;
}

int spec_load(const char *path, struct shim_spec *spec, struct error *err) {
  cleanup_free char *data = NULL;
  size_t len = 0;
  if (read_file(path, 64 << 20, &data, &len, err) < 0)
    return -1;
  return spec_decode((const unsigned char *)data, len, spec, err);
}

static void json_str_list(struct buf *o, const char *key, char **l, size_t n) {
  buf_printf(o, ",\"%s\":[", key);
  for (size_t i = 0; i < n; i++) {
    if (i)
      buf_append(o, ",", 1);
    buf_json_string(o, l[i]);
  }
  buf_append(o, "]", 1);
}

static void json_key_str(struct buf *o, const char *key, const char *v) {
  buf_printf(o, ",\"%s\":", key);
  buf_json_string(o, v);
}

void spec_dump_json(const struct shim_spec *s, struct buf *o) {
  buf_printf(o, "{\"mode\":\"%s\"", s->mode ? "exec" : "run");
  json_key_str(o, "id", s->id);
  json_str_list(o, "args", s->args, s->nargs);
  json_str_list(o, "env", s->env, s->nenv);
  json_key_str(o, "cwd", s->cwd);
  buf_printf(o, ",\"uid\":%u,\"gid\":%u,\"additionalGids\":[", s->uid, s->gid);
  for (size_t i = 0; i < s->ngids; i++)
    buf_printf(o, "%s%u", i ? "," : "", s->gids[i]);
  buf_printf(o, "],\"terminal\":%s,\"openStdin\":%s,\"noNewPrivileges\":%s", s->terminal ? "true" : "false",
             s->open_stdin ? "true" : "false", s->no_new_privs ? "true" : "false");
  buf_printf(o,
             ",\"capabilities\":{\"bounding\":\"%" PRIu64 "\",\"effective\":\"%" PRIu64
             "\",\"permitted\":\"%" PRIu64 "\",\"inheritable\":\"%" PRIu64 "\",\"ambient\":\"%" PRIu64 "\"}",
             s->cap_bounding, s->cap_effective, s->cap_permitted, s->cap_inheritable, s->cap_ambient);
  if (s->has_seccomp) {
    buf_append(o, ",\"seccomp\":\"", 12);
    for (size_t i = 0; i < s->seccomp_len; i++)
      buf_printf(o, "%02x", s->seccomp[i]);
    buf_append(o, "\"", 1);
  }
  buf_append(o, ",\"rlimits\":[", 12);
  for (size_t i = 0; i < s->nrlimits; i++)
    buf_printf(o, "%s{\"resource\":%u,\"soft\":\"%" PRIu64 "\",\"hard\":\"%" PRIu64 "\"}", i ? "," : "",
               s->rlimits[i].resource, s->rlimits[i].soft, s->rlimits[i].hard);
  buf_append(o, "]", 1);
  if (s->has_oom_score_adj)
    buf_printf(o, ",\"oomScoreAdj\":%d", s->oom_score_adj);
  buf_printf(o, ",\"init\":%s,\"namespaces\":%u,\"joinNamespaces\":[", s->init ? "true" : "false", s->namespaces);
  for (size_t i = 0; i < s->njoins; i++) {
    buf_printf(o, "%s{\"type\":%u,\"path\":", i ? "," : "", s->joins[i].type);
    buf_json_string(o, s->joins[i].path);
    buf_append(o, "}", 1);
  }
  buf_append(o, "]", 1);
  json_key_str(o, "rootfs", s->rootfs);
  buf_printf(o, ",\"readonlyRootfs\":%s,\"mounts\":[", s->readonly_rootfs ? "true" : "false");
  for (size_t i = 0; i < s->nmounts; i++) {
    const struct shim_mount *m = &s->mounts[i];
    buf_printf(o, "%s{\"source\":", i ? "," : "");
    buf_json_string(o, m->source);
    json_key_str(o, "target", m->target);
    json_key_str(o, "fstype", m->fstype);
    buf_printf(o, ",\"flags\":%u,\"propagation\":%u", m->flags, m->propagation);
    json_key_str(o, "data", m->data);
    buf_append(o, "}", 1);
  }
  buf_append(o, "],\"devices\":[", 13);
  for (size_t i = 0; i < s->ndevices; i++) {
    const struct shim_device *d = &s->devices[i];
    buf_printf(o, "%s{\"path\":", i ? "," : "");
    buf_json_string(o, d->path);
    buf_printf(o, ",\"type\":\"%c\",\"major\":%u,\"minor\":%u,\"mode\":%u,\"uid\":%u,\"gid\":%u}", d->type,
               d->major, d->minor, d->mode, d->uid, d->gid);
  }
  buf_append(o, "],\"symlinks\":[", 14);
  for (size_t i = 0; i < s->nsymlinks; i++) {
    buf_append(o, i ? ",[" : "[", i ? 2 : 1);
    buf_json_string(o, s->symlinks[i].target);
    buf_append(o, ",", 1);
    buf_json_string(o, s->symlinks[i].link);
    buf_append(o, "]", 1);
  }
  buf_append(o, "]", 1);
  json_str_list(o, "maskedPaths", s->masked, s->nmasked);
  json_str_list(o, "readonlyPaths", s->readonly, s->nreadonly);
  json_key_str(o, "hostname", s->hostname);
  json_str_list(o, "cgroupProcs", s->cgroup_procs, s->ncgroup_procs);
  if (s->has_target_pid)
    buf_printf(o, ",\"targetPid\":%u", s->target_pid);
  json_key_str(o, "logPath", s->log_path);
  json_key_str(o, "exitPath", s->exit_path);
  json_key_str(o, "socketPath", s->socket_path);
  buf_printf(o, ",\"holdUntilStart\":%s", s->hold ? "true" : "false");
  if (s->agent) {
    buf_printf(o, ",\"agent\":\"%s\",\"agentStart\":\"", s->agent == 1 ? "vm" : "session");
    for (size_t i = 0; i < s->agent_start_len; i++)
      buf_printf(o, "%02x", s->agent_start[i]);
    buf_printf(o, "\",\"bootTimeoutMs\":%u", s->boot_timeout_ms);
    if (s->nreclaim_files)
      json_str_list(o, "reclaimFiles", s->reclaim_files, s->nreclaim_files);
    if (s->agent_resume)
      buf_printf(o, ",\"agentResume\":true");
  }
  buf_append(o, "}", 1);
}
