import { randomBytes } from 'node:crypto';

/** A new 64-hex instance id, as docker's. */
export function newId(): string {
  return randomBytes(32).toString('hex');
}

/** docker's rule for names: [a-zA-Z0-9][a-zA-Z0-9_.-]+ */
export const NAME_PATTERN = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

const adjectives = [
  'admiring',
  'brave',
  'busy',
  'calm',
  'clever',
  'cool',
  'eager',
  'elegant',
  'festive',
  'focused',
  'gentle',
  'happy',
  'hopeful',
  'jolly',
  'keen',
  'kind',
  'lucid',
  'modest',
  'nice',
  'quirky',
  'relaxed',
  'serene',
  'sharp',
  'stoic',
  'sweet',
  'tender',
  'trusting',
  'vibrant',
  'wizardly',
  'zealous',
];
const surnames = [
  'albattani',
  'babbage',
  'bohr',
  'curie',
  'darwin',
  'dijkstra',
  'einstein',
  'euclid',
  'fermat',
  'galileo',
  'hopper',
  'hypatia',
  'kepler',
  'knuth',
  'lamport',
  'lovelace',
  'mccarthy',
  'meitner',
  'newton',
  'noether',
  'pascal',
  'ritchie',
  'shannon',
  'tesla',
  'thompson',
  'torvalds',
  'turing',
  'wozniak',
  'yalow',
  'zhukovsky',
];

/** A random docker-style name such as "brave_turing". */
export function randomName(): string {
  const pick = (list: string[]) => list[randomBytes(1)[0] % list.length];
  return `${pick(adjectives)}_${pick(surnames)}`;
}
