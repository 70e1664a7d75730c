/*
 * The agent channel, version 1: frames between the host (abode-shim in agent mode) and abode-agent,
 * the guest's PID 1, over the virtio-serial port named "org.abode.agent" (QEMU binds it to its
 * stdio, which the shim holds). TypeScript side: src/platform/qemu/agent-protocol.ts.
 *
 *   frame    u8 type, u8 0, u16 session (big-endian), u32 length (big-endian), `length` bytes
 *
 * Session 0 is the instance's main process; an exec gets a fresh session id from the shim. Text
 * payloads are ASCII decimals separated by one space.
 *
 * guest -> host
 *   READY    first frame after boot (the boot-time marker); payload: the guest kernel's release.
 *            A template's agent (kernel argument abode.template) says it twice: once booted, where
 *            the host snapshots the machine, and again in each restored copy after RESUME
 *   STDOUT STDERR   the session's output (a terminal's output arrives as STDOUT)
 *   STARTED  the session's process runs; payload: its guest pid
 *   ERROR    the process could not start; payload: "<step> <errno> <message>"; EXIT follows
 *   EXIT     the process ended; payload: "<exitCode> <signal>" (docker's convention: 128+signal)
 * host -> guest
 *   START    run a process in this session; payload: NUL-terminated "k=v" entries: a=argument
 *            (repeated, in order), e=NAME=value (repeated), c=cwd, u=uid, g=gid, G=additional gid
 *            (repeated), t=1 (terminal), i=1 (keep stdin open), h=hostname, r=rows, w=columns;
 *            session 0 only: R=1 (remount the root disk read-only before the process starts),
 *            m=<tag> <ro|rw> <path> (repeated: mount the virtio-fs share <tag> at <path>),
 *            T=<flags> <options|-> <path> (repeated: mount a tmpfs at <path>, mount(2) flags in decimal),
 *            C=<seconds>.<nanoseconds> (session 0 only: the host's clock, added by the shim, which the
 *            guest's is set to);
 *            P=1: instead of running a=..., print the guest's processes, a line each, tab-separated:
 *            uid pid ppid start(epoch s) tty_nr cpu-ticks command (`top`)
 *   STDIN    bytes for the session's stdin (the pty with a terminal)
 *   STDIN_EOF  close the session's stdin (not with a terminal)
 *   RESIZE   payload "<rows> <cols>"
 *   SIGNAL   payload "<signal>"; sent to the session's process
 *   RESUME   first frame to a machine restored from a template; payload: 64 random bytes that the
 *            agent adds to the kernel's entropy pool and reseeds with (copies must not share a random
 *            stream), then a NUL-terminated C= entry as in START; the agent then mounts the root disk
 *            and says READY
 *
 * When session 0's process ends the agent sends EXIT, kills what is left, syncs the disk and
 * powers the machine off.
 */
#ifndef ABODE_AGENT_PROTOCOL_H
#define ABODE_AGENT_PROTOCOL_H

#include <stdint.h>

#define AGENT_PORT_NAME "org.abode.agent"
#define AGENT_HEADER 8
#define AGENT_MAX_PAYLOAD (1u << 20)

enum agent_frame {
  AF_READY = 1,
  AF_STDOUT = 2,
  AF_STDERR = 3,
  AF_STARTED = 4,
  AF_ERROR = 5,
  AF_EXIT = 6,
  AF_START = 16,
  AF_STDIN = 17,
  AF_STDIN_EOF = 18,
  AF_RESIZE = 19,
  AF_SIGNAL = 20,
  AF_RESUME = 21,
};

static inline void agent_header(unsigned char h[AGENT_HEADER], int type, uint16_t session, uint32_t len) {
  h[0] = (unsigned char)type;
  h[1] = 0;
  h[2] = (unsigned char)(session >> 8);
  h[3] = (unsigned char)session;
  h[4] = (unsigned char)(len >> 24);
  h[5] = (unsigned char)(len >> 16);
  h[6] = (unsigned char)(len >> 8);
  h[7] = (unsigned char)len;
}

static inline uint16_t agent_session(const unsigned char *h) { return (uint16_t)(h[2] << 8 | h[3]); }

static inline uint32_t agent_length(const unsigned char *h) {
  return (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
}

#endif
