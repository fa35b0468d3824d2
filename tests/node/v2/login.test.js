'use strict';
// Login with the real deepstream.io-client-js 2.3.4 (websocket): the suite of
// tests/node/suite/login.js in the 2.x dialect, and a login without auth data (login(cb) and
// login({}, cb) send `A|REQ|{}`), whose user 'open' is watched through presence.
const test = require('node:test');
const assert = require('node:assert/strict');
const { isPresenceAckTimeout } = require('../lib/ops');
const dialect = require('../lib/dialect').v2;

require('../suite/login')(dialect);

const { ds, OPEN } = dialect;

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
