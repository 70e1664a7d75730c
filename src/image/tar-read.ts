/** Reading tar streams: the one reader behind layer apply (tar-apply.ts) and image archive load (archive/load.ts). */
import type { Duplex, Readable } from 'node:stream';
import { Parser, type ReadEntry } from 'tar';
import { InvalidArgumentError } from '../core/errors.js';

/**
 * Reads an uncompressed tar stream and calls `onEntry` for each entry in order, waiting for it to finish.
 * `through` sits between the input and the parser (it sees the raw bytes); an archive without entries
 * is refused unless `emptyIsValid` (a layer may be empty, an image archive may not). On the first
 * failure the streams are torn down and the promise rejects, a broken tar or gzip stream as bad input.
 */
export async function readTar(
  input: NodeJS.ReadableStream,
  onEntry: (entry: ReadEntry) => Promise<void>,
  opts: { through?: Duplex; emptyIsValid?: boolean } = {},
): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({ strict: true }) as unknown as NodeJS.WritableStream & Parser;
    const src = input as Readable;
    const feed: Readable = opts.through ?? src;
    let chain = Promise.resolve();
    let failed = false;
    let sawEntry = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      feed.unpipe(parser);
      if (opts.through) src.unpipe?.(opts.through);
      src.destroy?.();
      opts.through?.destroy();
      const code = String((err as NodeJS.ErrnoException)?.code);
      if (/^TAR_/.test(code))
        reject(new InvalidArgumentError(`invalid tar archive: ${(err as Error).message}`));
      else if (/^Z_/.test(code))
        reject(new InvalidArgumentError(`invalid gzip stream: ${(err as Error).message}`));
      else reject(err);
    };
    parser.on('entry', (entry: ReadEntry) => {
      sawEntry = true;
      chain = chain.then(async () => {
        if (failed) return void entry.resume();
        try {
          await onEntry(entry);
        } catch (err) {
          fail(err);
        }
        entry.resume();
      });
    });
    parser.on('error', fail);
    parser.on('end', () =>
      chain.then(() => {
        if (failed) return;
        if (!sawEntry && !opts.emptyIsValid)
          fail(new InvalidArgumentError('invalid tar archive: it has no entries'));
        else resolve();
      }),
    );
    input.on('error', fail);
    (opts.through ? src.pipe(opts.through) : src).pipe(parser);
  });
}
