/*
 * abode-qemu-discard.so, preloaded into QEMU for a VM restored from a template. QEMU 7.2 gives a guest
 * page back (free page reporting, the balloon) by punching a hole in the file behind guest RAM and
 * only then dropping its own mapping of the page (ram_block_discard_range). A copy maps its template's
 * memfd private, and the template is sealed against writes: the punch fails, and QEMU then skips the
 * drop as well, so the copy would never give memory back. When the punch fails on a write-sealed
 * file, this reports success: QEMU drops the page from its private mapping, which is all that a
 * private mapping's discard needs (later QEMU versions do just that), and the template stays whole.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/types.h>

static int sealed_punch(int fd, int mode) {
  if (!(mode & FALLOC_FL_PUNCH_HOLE) || errno != EPERM)
    return 0;
  int seals = fcntl(fd, F_GET_SEALS);
  return seals >= 0 && (seals & F_SEAL_WRITE);
}

int fallocate64(int fd, int mode, off_t offset, off_t len) {
  static int (*real)(int, int, off_t, off_t);
  if (!real)
    real = (int (*)(int, int, off_t, off_t))dlsym(RTLD_NEXT, "fallocate64");
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  int r = real(fd, mode, offset, len);
  return r < 0 && sealed_punch(fd, mode) ? 0 : r;
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
  return fallocate64(fd, mode, offset, len);
}
