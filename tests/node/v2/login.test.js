'use strict';
// Login with the real deepstream.io-client-js 2.3.4 (websocket) against open and file auth.
// Reference captures: captures/v2/lib-login-open.log, lib-login-file-success.log,
// lib-login-file-failure.log, raw-file-auth-failures.log.
//
// 2.3.4 behaviours (src/message/connection.js _handleAuthResponse, checked against 2.4.1):
//   - `A|A` -> callback(true, null); `A|A|<typed>` -> callback(true, <decoded clientData>);
//   - `A|E|INVALID_AUTH_DATA|<typed>` -> callback(false, <decoded>), state AWAITING_AUTHENTICATION;
//   - `A|E|TOO_MANY_AUTH_ATTEMPTS|<typed>` -> callback(false, <decoded>), then the server closes;
//   - auth errors are never emitted as client 'error' events;
//   - login(cb) / login({}, cb) send `A|REQ|{}`.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds2');

const OPEN = () => ds.env('DS2_OPEN_URL');
const FILE = () => ds.env('DS2_FILE_URL');

/** presence ack timeouts: 2.4.1 acks `U|S|S` with `U|A|S|U`, which the 2.3.4 client does not match */
const isPresenceAckTimeout = (e) => e.topic === 'U' && e.event === 'ACK_TIMEOUT';

test('login open: login({username}) succeeds with callback (true, null); handshake on the wire', { timeout: 10000 }, async () => {
  const name = ds.uid('alice');
  const c = ds.create(OPEN(), name);
  try {
    const args = await ds.login(c, { username: name });
    assert.deepEqual(args, [true, null]);
    assert.equal(c.getConnectionState(), 'OPEN');
    assert.deepEqual(ds.wireTexts(c), ['C|CH', 'C|A', 'A|A']);
    // the client answers the challenge with the full websocket URL
    assert.deepEqual(ds.sentTexts(c), [`C|CHR|ws://${OPEN()}/deepstream`, `A|REQ|{"username":"${name}"}`]);
    assert.deepEqual(c.errors, []);
  } finally {
    await ds.close(c);
  }
});

test("login open: login(cb) without auth data succeeds; the server's username is 'open' (seen via presence)", { timeout: 15000 }, async () => {
  // This is the only test of the suite that logs in anonymously on the open-auth server, so the
  // username 'open' appears and disappears with this client alone.
  const clients = [];
  try {
    const watcherName = ds.uid('watcher');
    const watcher = await ds.open(OPEN(), { username: watcherName }, 'watcher');
    clients.push(watcher);
    const events = [];
    watcher.presence.subscribe((username, isLoggedIn) => events.push([username, isLoggedIn]));
    await ds.waitWire(watcher, 'U|A|S|U');

    const anon = ds.create(OPEN(), 'anonymous');
    clients.push(anon);
    const args = await ds.login(anon, undefined);
    assert.deepEqual(args, [true, null]);
    assert.equal(anon.getConnectionState(), 'OPEN');
    assert.deepEqual(ds.sentTexts(anon).slice(-1), ['A|REQ|{}']);

    await ds.waitFor(() => events.some((e) => e[0] === 'open'), 3000, () => `the watcher to see 'open' log in (got ${JSON.stringify(events)})`);
    assert.deepEqual(events.filter((e) => e[0] === 'open'), [['open', true]]);

    // getAll: the watcher sees 'open'; the anonymous client sees the watcher but not itself
    const seenByWatcher = await ds.withTimeout(new Promise((r) => watcher.presence.getAll(r)), 3000, 'watcher getAll');
    assert.ok(seenByWatcher.includes('open'), JSON.stringify(seenByWatcher));
    const seenByAnon = await ds.withTimeout(new Promise((r) => anon.presence.getAll(r)), 3000, 'anonymous getAll');
    assert.ok(seenByAnon.includes(watcherName), JSON.stringify(seenByAnon));
    assert.ok(!seenByAnon.includes('open'), `getAll included the caller: ${JSON.stringify(seenByAnon)}`);
    assert.ok(!seenByAnon.includes('OPEN'), JSON.stringify(seenByAnon));

    await ds.close(anon);
    await ds.waitFor(() => events.filter((e) => e[0] === 'open').length >= 2, 3000, () => `the watcher to see 'open' log out (got ${JSON.stringify(events)})`);
    assert.deepEqual(events.filter((e) => e[0] === 'open'), [
      ['open', true],
      ['open', false],
    ]);
    assert.deepEqual(anon.errors, []);
    assert.deepEqual(ds.errorsExcept(watcher, isPresenceAckTimeout), []);
  } finally {
    await ds.closeAll(clients);
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

test('file login failure: wrong password -> callback (false, undefined), no error event, retry works', { timeout: 10000 }, async () => {
  const c = ds.create(FILE(), 'userA-bad');
  try {
    const args = await ds.login(c, { username: 'userA', password: 'nope' });
    // `A|E|INVALID_AUTH_DATA|U`: exactly two arguments, false and the decoded `U` (undefined)
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
    await ds.waitFor(() => c.endpointClosed, 3000, 'the server to close the connection');
    await ds.sleep(100);
    assert.equal(c.getConnectionState(), 'CLOSED');
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
