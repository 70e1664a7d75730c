/** Error categories with stable codes; one table maps them to HTTP status and CLI exit codes. */
export type ErrorCode =
  | 'not_found'
  | 'already_exists'
  | 'conflict'
  | 'invalid_argument'
  | 'unavailable'
  | 'cannot_execute'
  | 'command_not_found'
  | 'internal';

const httpStatus: Record<ErrorCode, number> = {
  not_found: 404,
  already_exists: 409,
  conflict: 409,
  invalid_argument: 400,
  unavailable: 503,
  cannot_execute: 500,
  command_not_found: 500,
  internal: 500,
};

/** docker's conventions: 125 engine error, 126 cannot execute, 127 command not found. */
const exitCodes: Record<ErrorCode, number> = {
  not_found: 125,
  already_exists: 125,
  conflict: 125,
  invalid_argument: 125,
  unavailable: 125,
  cannot_execute: 126,
  command_not_found: 127,
  internal: 125,
};

/** An error that crosses the API with a stable code and a one-line message. */
export class AbodeError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'AbodeError';
  }
  get httpStatus(): number {
    return httpStatus[this.code];
  }
  get exitCode(): number {
    return exitCodes[this.code];
  }
}

export class NotFoundError extends AbodeError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('not_found', message, details);
  }
}
export class AlreadyExistsError extends AbodeError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('already_exists', message, details);
  }
}
export class ConflictError extends AbodeError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('conflict', message, details);
  }
}
export class InvalidArgumentError extends AbodeError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('invalid_argument', message, details);
  }
}
export class UnavailableError extends AbodeError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('unavailable', message, details);
  }
}
export class InternalError extends AbodeError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('internal', message, details);
  }
}

/** Validation that reports every problem at once. */
export function invalidAll(problems: string[]): InvalidArgumentError {
  return new InvalidArgumentError(problems.join('; '), { problems });
}

/** Maps a stable code back to its error (used by the API client). */
export function errorFromCode(code: string, message: string, details?: Record<string, unknown>): AbodeError {
  const known = code in httpStatus ? (code as ErrorCode) : 'internal';
  return new AbodeError(known, message, details);
}

export function exitCodeFor(code: ErrorCode): number {
  return exitCodes[code];
}
