/** Where a file system puts what is created in a directory (ext4's block-group placement). */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Marks `dir` as a top of directory hierarchies (ext4's `chattr +T`): the Orlov allocator then spreads
 * its subdirectories over block groups with free room, instead of packing each next to its parent.
 * A store that unpacks into fresh subdirectories after deleting others no longer creates its inodes
 * in a group whose recently deleted ones ext4 skips one by one. False where the file system (or
 * chattr) does not have the flag: placement is only a speed-up.
 */
export async function spreadSubdirectories(dir: string): Promise<boolean> {
  try {
    await run('chattr', ['+T', dir]);
    return true;
  } catch {
    return false;
  }
}
