import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';

export interface UserDb {
  passwd: { name: string; uid: number; gid: number }[];
  group: { name: string; gid: number; members: string[] }[];
}

/** Reads etc/passwd and etc/group from the first of the given root directories that has each. */
export async function readUserDb(roots: string[]): Promise<UserDb> {
  const first = async (file: string): Promise<string> => {
    for (const root of roots) {
      try {
        return await readFile(join(root, file), 'utf8');
      } catch {
        // try the next layer
      }
    }
    return '';
  };
  const lines = (text: string) =>
    text
      .split('\n')
      .filter((line) => line && !line.startsWith('#'))
      .map((line) => line.split(':'));
  return {
    passwd: lines(await first('etc/passwd'))
      .filter((f) => f.length >= 4)
      .map((f) => ({ name: f[0], uid: Number(f[2]), gid: Number(f[3]) })),
    group: lines(await first('etc/group'))
      .filter((f) => f.length >= 3)
      .map((f) => ({ name: f[0], gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) })),
  };
}

/** Resolves docker's --user forms (name, uid, name:group, uid:gid) against the image's user database. */
export function resolveUser(
  spec: string,
  db: UserDb,
  fallback: { uid: number; gid: number } = { uid: 0, gid: 0 },
): { uid: number; gid: number; additionalGids: number[] } {
  if (spec === '') {
    const root = db.passwd.find((p) => p.uid === fallback.uid);
    return { uid: fallback.uid, gid: fallback.gid, additionalGids: supplementary(root?.name, db) };
  }
  const [userPart, groupPart] = spec.split(':', 2);
  let uid: number;
  let gid: number;
  let name: string | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const entry = db.passwd.find((p) => p.uid === uid);
    gid = entry?.gid ?? 0;
    name = entry?.name;
  } else {
    const entry = db.passwd.find((p) => p.name === userPart);
    if (!entry) {
      throw new InvalidArgumentError(`unable to find user ${userPart}: no matching entries in passwd file`);
    }
    ({ uid, gid, name } = entry);
  }
  if (groupPart !== undefined) {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const group = db.group.find((g) => g.name === groupPart);
      if (!group) {
        throw new InvalidArgumentError(
          `unable to find group ${groupPart}: no matching entries in group file`,
        );
      }
      gid = group.gid;
    }
  }
  if (uid > 0xfffffffe || gid > 0xfffffffe) throw new InvalidArgumentError(`invalid user "${spec}"`);
  return { uid, gid, additionalGids: supplementary(name, db).filter((g) => g !== gid) };
}

function supplementary(name: string | undefined, db: UserDb): number[] {
  if (!name) return [];
  return db.group.filter((g) => g.members.includes(name)).map((g) => g.gid);
}
