// What a failed connect tells the CLIs: only "nothing listens there" is "not running".
import { describe, expect, it } from 'vitest';
import { connectFailure } from '../../bin/connect-outcome.js';
import { ToonDBError } from '../../protocol/errors.js';

const unavailable = (errno?: string) =>
  new ToonDBError('UNAVAILABLE', 'cannot connect', errno === undefined ? {} : { cause: Object.assign(new Error(errno), { code: errno }) });

describe('connectFailure', () => {
  it('is "absent" only when nothing listens: no socket file, refused, or closed during the handshake', () => {
    expect(connectFailure(unavailable('ENOENT'))).toBe('absent');
    expect(connectFailure(unavailable('ECONNREFUSED'))).toBe('absent');
    expect(connectFailure(unavailable())).toBe('absent');
  });

  // Regression: every connect error but EACCES/EPERM counted as "not running", so a live
  // daemon whose listen queue was full (EAGAIN) could get a second one started beside it.
  it('is "unusable" for any other connect error, and for a daemon that answered and refused', () => {
    for (const errno of ['EACCES', 'EPERM', 'EAGAIN', 'ETIMEDOUT']) expect(connectFailure(unavailable(errno)), errno).toBe('unusable');
    for (const code of ['ACCESS_DENIED', 'SERVER_NOT_TRUSTED', 'TIMEOUT', 'TOO_MANY_CONNECTIONS', 'SHUTTING_DOWN'] as const) {
      expect(connectFailure(new ToonDBError(code, 'x')), code).toBe('unusable');
    }
  });

  it('is "usage" for a socket path or environment that is wrong', () => {
    expect(connectFailure(new ToonDBError('INVALID_ARGUMENT', 'empty path'))).toBe('usage');
    expect(connectFailure(new ToonDBError('SOCKET_PATH_TOO_LONG', 'long'))).toBe('usage');
  });
});
