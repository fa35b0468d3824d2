'use strict';
// Presence (2.x only) with the real deepstream.io-client-js 2.3.4, plus a raw websocket client.
//
// 2.3.4 library behaviours (src/presence/presence-handler.js, checked against 2.4.1):
//   - presence.subscribe(cb) sends `U|S|S`; cb(username, true) on `U|PNJ|<user>` and
//     cb(username, false) on `U|PNL|<user>`;
//   - presence.unsubscribe(cb) sends `U|US|US`;
//   - presence.getAll(cb) sends `U|Q|Q`; `U|Q|<u1>|<u2>...` -> cb([u1, u2, ...]) (cb([]) for a bare `U|Q`);
//   - 2.4.1 acks `U|S|S` with `U|A|S|U` (and `U|US|US` with `U|A|US|U`), which the client's ack
//     registry does not match (it waits for name 'S'/'US'): subscriptionTimeout (2000 ms) after
//     subscribe the client emits an 'error' (topic U, event ACK_TIMEOUT). Tolerated below.
// Other test files run at the same time and log in too, so every check here is limited to the
// unique usernames of this file.
// Reference captures: captures/v2/lib-presence.log, raw-presence-wire.log.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds2');
const raw = require('../lib/raw-ws');
const { getAll, isPresenceAckTimeout } = require('../lib/ops');

const OPEN = () => ds.env('DS2_OPEN_URL');
const FILE = () => ds.env('DS2_FILE_URL');

test('presence subscribe: login and logout of other users reach the callback once per username; unsubscribe stops them', { timeout: 20000 }, async (t) => {
  const prefix = ds.uid('pr');
  const u1 = `${prefix}-one`;
  const u2 = `${prefix}-two`;
  const watcherName = `${prefix}-watcher`;
  const clients = [];
  try {
    const watcher = await ds.open(OPEN(), { username: watcherName }, 'watcher');
    clients.push(watcher);
    const events = [];
    const cb = function (username, isLoggedIn) {
      events.push([username, isLoggedIn, arguments.length]);
    };
    const w0 = watcher.sent.length;
    watcher.presence.subscribe(cb);
    await ds.waitWire(watcher, 'U|A|S|U');
    assert.deepEqual(ds.sentTexts(watcher, w0), ['U|S|S']);
    const mine = () => events.filter((e) => e[0].startsWith(prefix));

    // u1 logs in on two connections: one join; leaves on both: one leave, after the second close
    const a1 = await ds.open(OPEN(), { username: u1 }, 'u1-a');
    clients.push(a1);
    await ds.waitFor(() => mine().length >= 1, 3000, () => `the watcher to see ${u1} log in (got ${JSON.stringify(events)})`);
    const a2 = await ds.open(OPEN(), { username: u1 }, 'u1-b');
    clients.push(a2);
    const b = await ds.open(OPEN(), { username: u2 }, 'u2');
    clients.push(b);
    await ds.waitFor(() => mine().length >= 2, 3000, () => `the watcher to see ${u2} log in (got ${JSON.stringify(events)})`);
    assert.deepEqual(mine(), [
      [u1, true, 2],
      [u2, true, 2],
    ]);
    assert.ok(ds.wireTexts(watcher).includes(`U|PNJ|${u1}`));

    await ds.close(a1);
    await ds.sleep(200);
    assert.equal(mine().length, 2, `a logout was reported while ${u1} still had a connection: ${JSON.stringify(mine())}`);
    await ds.close(a2);
    await ds.waitFor(() => mine().length >= 3, 3000, () => `the watcher to see ${u1} log out (got ${JSON.stringify(events)})`);
    assert.deepEqual(mine()[2], [u1, false, 2]);
    assert.ok(ds.wireTexts(watcher).includes(`U|PNL|${u1}`));

    // the watcher's own login/logout are not reported to itself (nothing about watcherName)
    assert.deepEqual(events.filter((e) => e[0] === watcherName), []);

    // unsubscribe: no more callbacks
    const w1 = watcher.sent.length;
    watcher.presence.unsubscribe(cb);
    await ds.waitWire(watcher, 'U|A|US|U');
    assert.deepEqual(ds.sentTexts(watcher, w1), ['U|US|US']);
    const n = events.length;
    const wire0 = watcher.wire.length;
    await ds.close(b);
    const c = await ds.open(OPEN(), { username: `${prefix}-three` }, 'u3');
    clients.push(c);
    await ds.sleep(300);
    assert.deepEqual(mine().slice(3), [], 'callbacks after unsubscribe');
    assert.equal(events.length, n);
    assert.deepEqual(
      ds.wireTexts(watcher, wire0).filter((x) => x.includes(prefix)),
      [],
      'presence messages after unsubscribe'
    );

    // the only tolerated errors: the unmatched presence acks (see the header)
    t.diagnostic(`watcher errors: ${JSON.stringify(watcher.errors)}`);
    assert.deepEqual(ds.errorsExcept(watcher, isPresenceAckTimeout), []);
    for (const x of [a1, a2, b, c]) assert.deepEqual(x.errors, [], `${x.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('presence getAll: lists the other logged-in users, never the caller; a user gone is gone', { timeout: 15000 }, async () => {
  const prefix = ds.uid('pq');
  const clients = [];
  try {
    const names = [`${prefix}-a`, `${prefix}-b`, `${prefix}-c`];
    const [a, b, c] = await Promise.all(names.map((n) => ds.open(OPEN(), { username: n }, n)));
    clients.push(a, b, c);
    const a0 = a.sent.length;
    const fromA = await getAll(a);
    assert.equal(fromA.length, 1, 'getAll calls back with one argument');
    assert.ok(Array.isArray(fromA[0]), JSON.stringify(fromA));
    assert.deepEqual(ds.sentTexts(a, a0), ['U|Q|Q']);
    assert.deepEqual(fromA[0].filter((n) => n.startsWith(prefix)).sort(), [names[1], names[2]]);
    const fromB = (await getAll(b))[0];
    assert.deepEqual(fromB.filter((n) => n.startsWith(prefix)).sort(), [names[0], names[2]]);
    // the reply on the wire: `U|Q|<user>|<user>...`, one field per user
    const reply = a.wire.filter((m) => m[0] === 'U' && m[1] === 'Q').pop();
    assert.deepEqual(reply.slice(2).sort(), fromA[0].slice().sort());

    await ds.close(c);
    let after;
    for (let i = 0; i < 50; i++) {
      after = (await getAll(a))[0];
      if (!after.includes(names[2])) break;
      await ds.sleep(20);
    }
    assert.deepEqual(after.filter((n) => n.startsWith(prefix)), [names[1]]);
    for (const x of [a, b, c]) assert.deepEqual(x.errors, [], `${x.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('presence with file auth: usernames are the authenticated ones', { timeout: 15000 }, async () => {
  // getAll leaves out every connection of the caller's username, so other tests logging in as
  // userA or userB at the same time do not matter here.
  const clients = [];
  try {
    const a = await ds.open(FILE(), { username: 'userA', password: 'password' }, 'userA');
    clients.push(a);
    const b = await ds.open(FILE(), { username: 'userB', password: 'secretB' }, 'userB');
    clients.push(b);
    const fromA = (await getAll(a))[0];
    assert.ok(fromA.includes('userB'), JSON.stringify(fromA));
    assert.ok(!fromA.includes('userA'), JSON.stringify(fromA));
    const fromB = (await getAll(b))[0];
    assert.ok(fromB.includes('userA'), JSON.stringify(fromB));
    assert.ok(!fromB.includes('userB'), JSON.stringify(fromB));
    for (const x of clients) assert.deepEqual(x.errors, [], `${x.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('presence on the wire (raw websocket): U|S|S, PNJ, U|Q|Q, PNL', { timeout: 15000 }, async () => {
  const prefix = ds.uid('prw');
  const raws = [];
  try {
    const w = await raw.connect(OPEN(), { auth: { username: `${prefix}-watcher` }, label: 'watcher' });
    raws.push(w);
    let from = w.received.length;
    w.send('U', 'S', 'S');
    await w.waitForMessage('U|A|S|U', 3000, from);

    const other = `${prefix}-other`;
    const o = await raw.connect(OPEN(), { auth: { username: other }, label: 'other' });
    raws.push(o);
    await w.waitForMessage(['U', 'PNJ', other], 3000, from);
    from = w.received.length;
    w.send('U', 'Q', 'Q');
    const q = await w.waitFor((m) => m[0] === 'U' && m[1] === 'Q', 3000, from, 'the query reply');
    assert.ok(q.slice(2).includes(other), q.join('|'));
    assert.ok(!q.slice(2).includes(`${prefix}-watcher`), q.join('|'));
    await o.close();
    await w.waitForMessage(['U', 'PNL', other], 3000, from);
    from = w.received.length;
    w.send('U', 'US', 'US');
    await w.waitForMessage('U|A|US|U', 3000, from);
    // the messages about `other` the watcher got, in order
    assert.deepEqual(
      w.texts().filter((x) => x.includes(other) && !x.startsWith('U|Q|')),
      [`U|PNJ|${other}`, `U|PNL|${other}`]
    );
    assert.equal(w.closed, false);
  } finally {
    await Promise.all(raws.map((c) => c.close()));
  }
});
