'use strict';
// Login with the real deepstream.io-client-js 1.1.1 (TCP) against open and file auth.
// Reference captures: captures/v1/lib-login-open.log, lib-login-file-success.log,
// lib-login-file-failure.log, raw-file-auth-failures.log.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds');

const OPEN = () => ds.env('DS_OPEN_URL');
const FILE = () => ds.env('DS_FILE_URL');

test('login open: login({username}) succeeds with no client data', { timeout: 10000 }, async () => {
  const c = ds.create(OPEN(), 'alice');
  try {
    const args = await ds.login(c, { username: 'alice' });
    // 1.1.1 calls back (true, null) for `A|A` without data
    assert.deepEqual(args, [true, null]);
    assert.equal(c.getConnectionState(), 'OPEN');
    assert.deepEqual(ds.wireTexts(c), ['C|CH', 'C|A', 'A|A']);
    assert.deepEqual(c.errors, []);
  } finally {
    await ds.close(c);
  }
});

test('login open: login() without auth data succeeds too', { timeout: 10000 }, async () => {
  const c = ds.create(OPEN(), 'anonymous');
  try {
    const args = await ds.login(c, undefined);
    assert.deepEqual(args, [true, null]);
    assert.equal(c.getConnectionState(), 'OPEN');
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
    assert.deepEqual(ds.wireTexts(a).slice(-1), ['A|A|O{"favouriteColor":"red"}']);
    assert.deepEqual(ds.wireTexts(c).slice(-1), ['A|A|L']);
    for (const x of [a, b, c]) {
      assert.equal(x.getConnectionState(), 'OPEN');
      assert.deepEqual(x.errors, []);
    }
  } finally {
    await ds.closeAll([a, b, c]);
  }
});

test('file login failure: wrong password -> callback (false, undefined), no error event, retry works', { timeout: 10000 }, async () => {
  const c = ds.create(FILE(), 'userA-bad');
  try {
    const args = await ds.login(c, { username: 'userA', password: 'nope' });
    // Observed with 1.1.1 against the real server: `A|E|INVALID_AUTH_DATA|U` makes the library call
    // the login callback with exactly two arguments, false and the decoded `U` (undefined).
    // Auth errors are not routed to the client's 'error' event.
    assert.equal(args.length, 2);
    assert.equal(args[0], false);
    assert.equal(args[1], undefined);
    assert.deepEqual(ds.wireTexts(c), ['C|CH', 'C|A', 'A|E|INVALID_AUTH_DATA|U']);
    assert.equal(c.getConnectionState(), 'AWAITING_AUTHENTICATION');
    assert.deepEqual(c.errors, []);

    // unknown user: same reply
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
    assert.equal(r2[0], false);
    assert.equal(r2[1], undefined);
    // third failure: the callback fires twice, for INVALID_AUTH_DATA and then TOO_MANY_AUTH_ATTEMPTS
    c.login({ username: 'userC', password: 'wrong' }, (...args) => calls.push(args));
    await ds.waitFor(() => calls.length >= 2, 3000, 'two callbacks after the third failure');
    assert.deepEqual(calls, [
      [false, undefined],
      [false, 'too many authentication attempts'],
    ]);
    await ds.waitFor(() => c.getConnectionState() === 'CLOSED', 3000, 'the connection to close');
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
