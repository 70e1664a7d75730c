/** Image references with docker's grammar and normalization (`busybox` → `docker.io/library/busybox:latest`). */
import { InvalidArgumentError } from './errors.js';
import type { Digest } from './digest.js';

export const DEFAULT_DOMAIN = 'docker.io';
export const DEFAULT_TAG = 'latest';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
const NAME_TOTAL_LENGTH_MAX = 255;

/** A parsed, normalized reference: `domain/path[:tag][@digest]`. */
export interface Reference {
  domain: string;
  path: string;
  tag?: string;
  digest?: Digest;
}

// The grammar of github.com/distribution/reference (regexp.go).
const alphanumeric = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const domainNameComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const ipv6address = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`;
const host = `(?:${domainName}|${ipv6address})`;
const domainAndPort = `${host}(?::[0-9]+)?`;
const tagPat = '[\\w][\\w.-]{0,127}';
const digestPat = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}';
const remoteName = `${pathComponent}(?:/${pathComponent})*`;
const namePat = `(?:(${domainAndPort})/)?(${remoteName})`;
const REFERENCE_RE = new RegExp(`^${namePat}(?::(${tagPat}))?(?:@(${digestPat}))?$`);
const ANCHORED_ID_RE = /^[a-f0-9]{64}$/;
const TAG_RE = new RegExp(`^${tagPat}$`);

function invalid(reason?: string, ref?: string): InvalidArgumentError {
  const message = reason ? `invalid reference format: ${reason}` : 'invalid reference format';
  return new InvalidArgumentError(message, ref === undefined ? undefined : { reference: ref });
}

function splitDockerDomain(name: string): { domain: string; remainder: string } {
  const i = name.indexOf('/');
  let domain: string;
  let remainder: string;
  const first = i === -1 ? '' : name.slice(0, i);
  if (i === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    remainder = name;
  } else {
    domain = first;
    remainder = name.slice(i + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return { domain, remainder };
}

/** Parses and normalizes a reference as docker does; adds no default tag. Throws InvalidArgumentError. */
export function parseReference(s: string): Reference {
  if (s === '') throw invalid('repository name must have at least one component', s);
  if (ANCHORED_ID_RE.test(s)) throw invalid('cannot specify 64-byte hexadecimal strings', s);
  const { domain, remainder } = splitDockerDomain(s);
  const colon = remainder.indexOf(':');
  const repo = colon === -1 ? remainder : remainder.slice(0, colon);
  const at = repo.indexOf('@');
  const repoName = at === -1 ? repo : repo.slice(0, at);
  if (repoName.toLowerCase() !== repoName) throw invalid('repository name must be lowercase', s);
  const full = `${domain}/${remainder}`;
  const m = REFERENCE_RE.exec(full);
  if (!m) throw invalid(undefined, s);
  const [, d, path, tag, digest] = m;
  const name = `${d}/${path}`;
  if (name.length > NAME_TOTAL_LENGTH_MAX) {
    throw invalid(`repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`, s);
  }
  const ref: Reference = { domain: d!, path: path! };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) {
    if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw invalid(undefined, s);
    ref.digest = digest as Digest;
  }
  return ref;
}

/** Parses, normalizes and adds `:latest` when neither tag nor digest is given (docker's TagNameOnly). */
export function parseNormalizedTagged(s: string): Reference {
  const ref = parseReference(s);
  if (ref.tag === undefined && ref.digest === undefined) ref.tag = DEFAULT_TAG;
  return ref;
}

/** True when `tag` is a valid tag. */
export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** The repository name: `docker.io/library/busybox`. */
export function referenceName(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The full normalized string: `docker.io/library/busybox:latest`. */
export function formatReference(ref: Reference): string {
  let s = referenceName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** The repository name as docker displays it: `busybox`, `user/app`, `host:5000/app`. */
export function familiarName(ref: Reference): string {
  if (ref.domain !== DEFAULT_DOMAIN) return referenceName(ref);
  const rest = ref.path.slice(OFFICIAL_REPO_PREFIX.length);
  if (ref.path.startsWith(OFFICIAL_REPO_PREFIX) && !rest.includes('/')) return rest;
  return ref.path;
}

/** The reference as docker displays it: `busybox:latest`. */
export function familiarString(ref: Reference): string {
  let s = familiarName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** Normalizes a user-typed reference to its full form with a default tag: `busybox` → `docker.io/library/busybox:latest`. */
export function normalizeReference(s: string): string {
  return formatReference(parseNormalizedTagged(s));
}

/** Shortens a normalized reference string for display: `docker.io/library/busybox:latest` → `busybox:latest`. */
export function familiarize(s: string): string {
  return familiarString(parseReference(s));
}
