'use strict';
// Login with the real client library of a dialect (tests/node/lib/dialect.js: 1.1.1 over TCP,
// 2.3.4 over websocket) against open and file auth. Run by tests/node/v1/login.test.js and
// tests/node/v2/login.test.js, which add the login without auth data (2.x: as user 'open').
// Reference captures: captures/v1 and captures/v2, lib-login-open.log, lib-login-file-success.log,
// lib-login-file-failure.log, raw-file-auth-failures.log.
//
// Library behaviours (1.1.1 and 2.3.4 alike; 2.3.4: src/message/connection.js _handleAuthResponse,
// checked against 2.4.1):
//   - `A|A` -> callback(true, null); `A|A|<typed>` -> callback(true, <decoded clientData>);
//   - `A|E|INVALID_AUTH_DATA|<typed>` -> callback(false, <decoded>), state AWAITING_AUTHENTICATION;
//   - `A|E|TOO_MANY_AUTH_ATTEMPTS|<typed>` -> callback(false, <decoded>), then the server closes;
//   - auth errors are never emitted as client 'error' events.
const test = require('node:test');
const assert = require('node:assert/strict');

module.exports = function loginSuite(dialect) {
  const { ds, OPEN, FILE } = dialect;

  test('login open: login({username}) succeeds with callback (true, null); handshake on the wire', { timeout: 10000 }, async () => {
    const name = ds.uid('alice');
    const c = ds.create(OPEN(), name);
    try {
      const args = await ds.login(c, { username: name });
      // the library calls back (true, null) for `A|A` without data
      assert.deepEqual(args, [true, null]);
      assert.equal(c.getConnectionState(), 'OPEN');
      assert.deepEqual(ds.wireTexts(c), ['C|CH', 'C|A', 'A|A']);
      if (ds.sentTexts) {
        // (2.x, whose helper records what the client sent) the client answers the challenge with
        // the full websocket URL
        assert.deepEqual(ds.sentTexts(c), [`C|CHR|ws://${OPEN()}/deepstream`, `A|REQ|{"username":"${name}"}`]);
      }
      assert.deepEqual(c.errors, []);
    } finally {
      await ds.close(c);
    }
  });

  test('file login success: userA gets its clientData, userB its own, userC null', { timeout: 10000 }, async () => {
    const a = ds.create(FILE(), 'userA');
    const b = ds.create(FILE(), 'userB');
    const c = ds.create(FILE(), 'userC');
    try {
      const [ra, rb, rc] = await Promise.all([
        ds.login(a, { username: 'userA', password: 'password' }),
        ds.login(b, { username: 'userB', password: 'secretB' }),
        ds.login(c, { username: 'userC', password: 'password' }),
      ]);
      assert.deepEqual(ra, [true, { favouriteColor: 'red' }]);
      assert.deepEqual(rb, [true, { id: 2, tags: ['b', 'second'], nested: { ok: true, none: null } }]);
      // no clientData: the server sends `A|A|L`, the client decodes null
      assert.deepEqual(rc, [true, null]);
      assert.deepEqual(ds.wireTexts(a), ['C|CH', 'C|A', 'A|A|O{"favouriteColor":"red"}']);
      assert.deepEqual(ds.wireTexts(c), ['C|CH', 'C|A', 'A|A|L']);
      for (const x of [a, b, c]) {
        assert.equal(x.getConnectionState(), 'OPEN');
        assert.deepEqual(x.errors, []);
      }
    } finally {
      await ds.closeAll([a, b, c]);
    }
  });

  // scripts/node-tests.sh adds userH to the users file with a password hashed by
  // `corestream hash` (a fresh salt each run): the reference servers must accept it too.
  test('file login with a password hashed by `corestream hash`: accepted, and a wrong one refused', { timeout: 10000 }, async () => {
    const h = ds.create(FILE(), 'userH');
    const wrong = ds.create(FILE(), 'userH-wrong');
    try {
      const [right, refused] = await Promise.all([
        ds.login(h, { username: 'userH', password: 'hashed-by-corestream' }),
        ds.login(wrong, { username: 'userH', password: 'hashed-by-corestream!' }),
      ]);
      assert.deepEqual(right, [true, null]);
      assert.equal(refused[0], false);
      assert.deepEqual(ds.wireTexts(h), ['C|CH', 'C|A', 'A|A|L']);
    } finally {
      await ds.closeAll([h, wrong]);
    }
  });

  test('file login failure: wrong password -> callback (false, undefined), no error event, retry works', { timeout: 10000 }, async () => {
    const c = ds.create(FILE(), 'userA-bad');
    try {
      const args = await ds.login(c, { username: 'userA', password: 'nope' });
      // Observed with 1.1.1 and 2.3.4 against the real servers: `A|E|INVALID_AUTH_DATA|U` makes the
      // library call the login callback with exactly two arguments, false and the decoded `U`
      // (undefined). Auth errors are not routed to the client's 'error' event.
      assert.equal(args.length, 2);
      assert.equal(args[0], false);
      assert.equal(args[1], undefined);
      assert.deepEqual(ds.wireTexts(c), ['C|CH', 'C|A', 'A|E|INVALID_AUTH_DATA|U']);
      assert.equal(c.getConnectionState(), 'AWAITING_AUTHENTICATION');
      assert.deepEqual(c.errors, []);

      // unknown user: the same reply
      const args2 = await ds.login(c, { username: 'nobody', password: 'password' });
      assert.equal(args2.length, 2);
      assert.equal(args2[0], false);
      assert.equal(args2[1], undefined);

      // the same connection can still log in (2 failures < maxAuthAttempts 3)
      const ok = await ds.login(c, { username: 'userA', password: 'password' });
      assert.deepEqual(ok, [true, { favouriteColor: 'red' }]);
      assert.equal(c.getConnectionState(), 'OPEN');
      assert.deepEqual(c.errors, []);
    } finally {
      await ds.close(c);
    }
  });

  test('file login failure: missing password, then too many attempts closes the connection', { timeout: 10000 }, async () => {
    const c = ds.create(FILE(), 'userA-many');
    try {
      const calls = [];
      const r1 = await ds.login(c, { username: 'userA' });
      assert.deepEqual(r1, [false, 'missing authentication parameter password']);
      const r2 = await ds.login(c, { username: 'userB', password: 'password' });
      assert.equal(r2.length, 2);
      assert.equal(r2[0], false);
      assert.equal(r2[1], undefined);
      // third failure: the callback fires twice, for INVALID_AUTH_DATA and then TOO_MANY_AUTH_ATTEMPTS
      c.login({ username: 'userC', password: 'wrong' }, (...args) => calls.push(args));
      await ds.waitFor(() => calls.length >= 2, 3000, 'two callbacks after the third failure');
      assert.deepEqual(calls, [
        [false, undefined],
        [false, 'too many authentication attempts'],
      ]);
      // the server closes the socket; the client does not reconnect
      await ds.waitServerClose(c);
      assert.deepEqual(ds.wireTexts(c), [
        'C|CH',
        'C|A',
        'A|E|INVALID_AUTH_DATA|Smissing authentication parameter password',
        'A|E|INVALID_AUTH_DATA|U',
        'A|E|INVALID_AUTH_DATA|U',
        'A|E|TOO_MANY_AUTH_ATTEMPTS|Stoo many authentication attempts',
      ]);
      assert.deepEqual(c.errors, []);
    } finally {
      await ds.close(c);
    }
  });
};
