import { AbodeError, InternalError } from '../core/errors.js';

const ENOENT = 2;
const EACCES = 13;
const ENOEXEC = 8;

interface StepFailure {
  step?: string;
  errno?: number;
  path?: string;
  message?: string;
}

/** Maps a monitor's preparation failure to docker's errors: 127 not found, 126 cannot execute, else 125. */
export function processFailure(error: unknown, command: string): AbodeError {
  if (error instanceof AbodeError) return error;
  const failure = (error ?? {}) as StepFailure;
  if (failure.step === 'exec') {
    if (failure.errno === ENOENT) {
      const what = command.includes('/') ? 'no such file or directory' : 'executable file not found in $PATH';
      return new AbodeError('command_not_found', `exec: "${command}": ${what}`, { ...failure });
    }
    if (failure.errno === EACCES || failure.errno === ENOEXEC) {
      return new AbodeError('cannot_execute', `exec: "${command}": permission denied`, { ...failure });
    }
  }
  const message = failure.message ?? (error instanceof Error ? error.message : String(error));
  return new InternalError(`failed to create the instance: ${message}`, { ...failure });
}

/** As processFailure, for exec into a running instance. */
export function execFailure(error: unknown, command: string): AbodeError {
  return processFailure(error, command);
}
