/** The uncompressed kernel (an ELF with a PVH entry) from a bzImage, for QEMU's direct PVH boot. */
import { gunzipSync } from 'node:zlib';
import { InvalidArgumentError } from '../../core/errors.js';
import { lz4LegacyDecompress } from './lz4.js';

/** The compressed payload inside a bzImage (boot protocol ≥ 2.08: payload_offset/payload_length). */
export function bzImagePayload(image: Buffer): Buffer {
  if (image.length < 0x250 || image.toString('latin1', 0x202, 0x206) !== 'HdrS')
    throw new InvalidArgumentError('not a bzImage (no HdrS header)');
  const setupSects = image[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + image.readUInt32LE(0x248);
  const length = image.readUInt32LE(0x24c);
  if (start + length > image.length) throw new InvalidArgumentError('bzImage payload runs past the file');
  return image.subarray(start, start + length);
}

/** Decompresses a bzImage's kernel (LZ4 or gzip) into the vmlinux ELF. */
export function extractVmlinux(image: Buffer): Buffer {
  const payload = bzImagePayload(image);
  let elf: Buffer;
  if (payload.readUInt32LE(0) === 0x184c2102) elf = lz4LegacyDecompress(payload);
  else if (payload[0] === 0x1f && payload[1] === 0x8b) elf = gunzipSync(payload);
  else
    throw new InvalidArgumentError(
      `bzImage payload compressed with an unsupported method (magic ${payload.subarray(0, 4).toString('hex')}; LZ4 and gzip are supported)`,
    );
  if (elf.toString('latin1', 0, 4) !== '\x7fELF')
    throw new InvalidArgumentError('decompressed kernel is not an ELF');
  return elf;
}
