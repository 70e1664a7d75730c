/** LZ4 decompression of the "legacy" frame format the Linux kernel uses for an LZ4-compressed bzImage. */
import { InvalidArgumentError } from '../../core/errors.js';

const LEGACY_MAGIC = 0x184c2102;
const BLOCK_MAX = 8 << 20;

/** Decompresses one LZ4 block into out at op; returns the new output position. */
export function lz4Block(input: Uint8Array, start: number, end: number, out: Uint8Array, op: number): number {
  let ip = start;
  while (ip < end) {
    const token = input[ip++]!;
    let literals = token >> 4;
    if (literals === 15) {
      let b;
      do {
        b = input[ip++]!;
        literals += b;
      } while (b === 255 && ip < end);
    }
    if (ip + literals > end || op + literals > out.length)
      throw new InvalidArgumentError('lz4: literals run past the block');
    out.set(input.subarray(ip, ip + literals), op);
    ip += literals;
    op += literals;
    if (ip >= end) break;
    const offset = input[ip]! | (input[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op) throw new InvalidArgumentError('lz4: bad match offset');
    let length = token & 15;
    if (length === 15) {
      let b;
      do {
        b = input[ip++]!;
        length += b;
      } while (b === 255 && ip < end);
    }
    length += 4;
    if (op + length > out.length) throw new InvalidArgumentError('lz4: match runs past the output');
    if (offset >= length) {
      out.copyWithin(op, op - offset, op - offset + length);
      op += length;
    } else {
      for (let i = 0; i < length; i++, op++) out[op] = out[op - offset]!;
    }
  }
  return op;
}

/** Decompresses a legacy LZ4 stream (magic 0x184C2102, then size-prefixed 8 MiB blocks); trailing bytes are ignored. */
export function lz4LegacyDecompress(input: Uint8Array): Buffer {
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  if (input.length < 4 || view.getUint32(0, true) !== LEGACY_MAGIC)
    throw new InvalidArgumentError('lz4: not a legacy LZ4 stream');
  const parts: Buffer[] = [];
  let off = 4;
  while (off + 4 <= input.length) {
    const size = view.getUint32(off, true);
    if (size === LEGACY_MAGIC) {
      off += 4;
      continue;
    }
    if (size === 0 || off + 4 + size > input.length) break;
    const block = Buffer.allocUnsafe(BLOCK_MAX);
    const n = lz4Block(input, off + 4, off + 4 + size, block, 0);
    parts.push(block.subarray(0, n));
    off += 4 + size;
  }
  return Buffer.concat(parts);
}
