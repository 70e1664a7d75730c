/*
 * abode-shim spec protocol, version 2 (TypeScript side: src/platform/native-protocol.ts).
 *
 * A spec file is:
 *
 *   header   "ABSH" (4 bytes) + u32 version (little-endian)
 *   records  u16 tag + u32 length + `length` bytes of value, until the end of the file
 *
 * All integers are little-endian. Strings are raw UTF-8 bytes without a terminating NUL and
 * must not contain NUL. A list is the same tag repeated, in order. A decoder rejects an unknown
 * tag, a short record, a NUL inside a string and a version it does not speak; adding a field
 * means a new tag and a version bump.
 *
 * Value layouts (u8 booleans are 0 or 1):
 *
 *   MODE              u8: 0 run, 1 exec
 *   ID ARG ENV CWD ROOTFS HOSTNAME MASKED_PATH READONLY_PATH CGROUP_PROCS LOG_PATH EXIT_PATH
 *   SOCKET_PATH       string
 *   UID GID ADDITIONAL_GID NAMESPACES TARGET_PID   u32
 *   OOM_SCORE_ADJ     i32
 *   TERMINAL OPEN_STDIN NO_NEW_PRIVS INIT READONLY_ROOTFS HOLD   u8
 *   CAPABILITIES      5 x u64: bounding, effective, permitted, inheritable, ambient (40 bytes)
 *   SECCOMP           struct sock_filter[] as is (8 bytes each, host byte order)
 *   RLIMIT            u32 resource, u64 soft, u64 hard (20 bytes)
 *   JOIN_NAMESPACE    u32 CLONE_NEW* type, then the path (rest of the value)
 *   MOUNT             u32 flags, u32 propagation, then source NUL target NUL fstype NUL data
 *                     (exactly three NUL separators; the value does not end with NUL)
 *   DEVICE            u8 type ('c' or 'b'), 3 zero bytes, u32 major, u32 minor, u32 mode,
 *                     u32 uid, u32 gid, then the path (rest of the value; 24-byte fixed part)
 *   SYMLINK           target NUL linkPath
 *   AGENT             u8: 0 none, 1 vm (the child is QEMU with the agent port on its stdio),
 *                     2 session (the child is `abode-shim --relay SOCKET` into a vm shim)
 *   AGENT_START       bytes: the START payload (agent-protocol.h) sent when the process starts
 *   BOOT_TIMEOUT      u32 milliseconds to wait for the agent's READY before giving up
 *
 * Absent optional fields (SECCOMP, OOM_SCORE_ADJ, TARGET_PID) mean "not set".
 */
#ifndef ABODE_PROTOCOL_H
#define ABODE_PROTOCOL_H

#define SHIM_MAGIC "ABSH"
#define SHIM_PROTOCOL_VERSION 2

enum shim_tag {
  TAG_MODE = 1,
  TAG_ID = 2,
  TAG_ARG = 3,
  TAG_ENV = 4,
  TAG_CWD = 5,
  TAG_UID = 6,
  TAG_GID = 7,
  TAG_ADDITIONAL_GID = 8,
  TAG_TERMINAL = 9,
  TAG_OPEN_STDIN = 10,
  TAG_NO_NEW_PRIVS = 11,
  TAG_CAPABILITIES = 12,
  TAG_SECCOMP = 13,
  TAG_RLIMIT = 14,
  TAG_OOM_SCORE_ADJ = 15,
  TAG_INIT = 16,
  TAG_NAMESPACES = 17,
  TAG_JOIN_NAMESPACE = 18,
  TAG_ROOTFS = 19,
  TAG_READONLY_ROOTFS = 20,
  TAG_MOUNT = 21,
  TAG_DEVICE = 22,
  TAG_SYMLINK = 23,
  TAG_MASKED_PATH = 24,
  TAG_READONLY_PATH = 25,
  TAG_HOSTNAME = 26,
  TAG_CGROUP_PROCS = 27,
  TAG_TARGET_PID = 28,
  TAG_LOG_PATH = 29,
  TAG_EXIT_PATH = 30,
  TAG_SOCKET_PATH = 31,
  TAG_HOLD = 32,
  TAG_AGENT = 33,
  TAG_AGENT_START = 34,
  TAG_BOOT_TIMEOUT = 35,
  TAG_RECLAIM_FILE = 36,
  TAG_AGENT_RESUME = 37,
};

/*
 * The control socket (socketPath, unix stream). One connection serves one purpose, chosen by
 * its first line:
 *
 *   attach <0|1>\n      output frames follow: [stream u8 (1 stdout, 2 stderr, 3 exit), 0, 0, 0,
 *                       u32 big-endian length] + payload; the stream-3 frame carries the exit
 *                       record JSON and ends the connection. With 1, bytes from the client go to
 *                       the process's stdin (pty master with a terminal); the client's EOF closes
 *                       a pipe stdin.
 *   start\n             -> "ok\n" | "error <message>\n"   (release a holdUntilStart process)
 *   signal <n>\n        -> "ok\n" | "error <message>\n"
 *   resize <rows> <cols>\n -> "ok\n" | "error <message>\n"
 *   wait\n              -> "exit <exit record JSON>\n" once the process has exited
 *   state\n             -> "created <pid>\n" | "running <pid>\n" | "exited <exit record JSON>\n"
 *
 * Unknown lines get "error unknown request\n".
 *
 * Agent mode (AGENT 1 or 2): the child's stdio carries agent frames (agent-protocol.h). The shim
 * prints its ready line once the agent said READY (with "bootMs"), or fails with step "boot".
 * Session 0's STDOUT/STDERR frames become the log and attach output; start sends START and
 * replies when the agent says STARTED or ERROR; signal, resize and attach stdin become frames
 * (signal 9 kills QEMU itself in vm mode); the exit record carries the guest process's EXIT.
 * A vm shim also serves
 *   session\n           the connection becomes a new agent session: frames in both directions,
 *                       with session 0 on the connection mapped to a fresh id on the agent channel
 *                       (abode-shim --relay connects exec shims this way)
 */
#define FRAME_STDOUT 1
#define FRAME_STDERR 2
#define FRAME_EXIT 3

#endif
