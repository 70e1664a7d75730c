/* The process's output: CRI log lines and stdcopy frames. */
#ifndef ABODE_IO_H
#define ABODE_IO_H

#include <stddef.h>
#include <stdint.h>

/* Appends data to the CRI log: one "<time> <stdout|stderr> F <line>" per line, P for a trailing part. */
void log_write(int logfd, int stream, const char *data, size_t len);
/* docker's stdcopy header: stream, 0, 0, 0, u32 big-endian length. */
void frame_header(unsigned char out[8], int stream, uint32_t len);

#endif
