'use strict';
// Wire-level checks with a raw TCP client (tests/node/lib/raw.js), mixed with the real
// deepstream.io-client-js 1.1.1 where useful: the suite of tests/node/suite/raw-wire.js in the
// 1.x dialect, and the 1.x checks.
// Reference captures: captures/v1/raw-handshake-open-auth.log, raw-listen-wire.log,
// raw-event-typed-payloads.log, raw-event-emit-to-library.log.
const test = require('node:test');
const assert = require('node:assert/strict');
const { closeRaws } = require('../lib/wire');
const dialect = require('../lib/dialect').v1;

require('../suite/raw-wire')(dialect);

const { ds, raw, OPEN } = dialect;

test('raw: event listen wire exchange (L, SP, LA, SR, UL)', { timeout: 10000 }, async () => {
  const prefix = ds.uid('lw');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/a`;
  const list = [];
  try {
    const p = await raw.connect(OPEN(), { auth: { username: 'rawlisten' }, label: 'p' });
    list.push(p);
    const s = await raw.connect(OPEN(), { auth: { username: 'rawsub' }, label: 's' });
    list.push(s);
    const p0 = p.received.length;
    const s0 = s.received.length;

    p.send('E', 'L', pattern);
    await p.waitForMessage(['E', 'A', 'L', pattern], 3000, p0);
    s.send('E', 'S', name);
    await p.waitForMessage(['E', 'SP', pattern, name], 3000, p0);
    await s.waitForMessage(['E', 'A', 'S', name], 3000, s0);
    p.send('E', 'LA', pattern, name);
    await ds.sleep(100);
    s.send('E', 'US', name);
    await p.waitForMessage(['E', 'SR', pattern, name], 3000, p0);
    await s.waitForMessage(['E', 'A', 'US', name], 3000, s0);
    p.send('E', 'UL', pattern);
    await p.waitForMessage(['E', 'A', 'UL', pattern], 3000, p0);
    await ds.sleep(50);

    assert.deepEqual(p.texts().slice(p0), [
      `E|A|L|${pattern}`,
      `E|SP|${pattern}|${name}`,
      `E|SR|${pattern}|${name}`,
      `E|A|UL|${pattern}`,
    ]);
    assert.deepEqual(s.texts().slice(s0), [`E|A|S|${name}`, `E|A|US|${name}`]);
  } finally {
    await closeRaws(list);
  }
});

test('raw: library typed emits are forwarded verbatim; an EVT without data reaches the library as undefined', { timeout: 15000 }, async () => {
  const name = `${ds.uid('typed')}/x`;
  const list = [];
  const clients = [];
  try {
    const s = await raw.connect(OPEN(), { auth: { username: 'rawsub' }, label: 'raw-sub' });
    list.push(s);
    const rp = await raw.connect(OPEN(), { auth: { username: 'rawpub' }, label: 'raw-pub' });
    list.push(rp);
    const pub = await ds.open(OPEN(), { username: 'libpub' }, 'libpub');
    const lsub = await ds.open(OPEN(), { username: 'libsub' }, 'libsub');
    clients.push(pub, lsub);

    s.send('E', 'S', name);
    await s.waitForMessage(['E', 'A', 'S', name]);
    const libGot = [];
    lsub.event.subscribe(name, function () {
      libGot.push(Array.from(arguments));
    });
    await ds.waitWire(lsub, `E|A|S|${name}`);

    // barrier: make sure both subscriptions are effective for the library publisher
    const isSyncMsg = (m) => m[0] === 'E' && m[1] === 'EVT' && m[2] === name && /^Ssync-/.test(m[3] || '');
    for (let k = 0; ; k++) {
      if (s.received.some(isSyncMsg) && libGot.some((a) => /^sync-/.test(a[0]))) break;
      if (k > 200) throw new Error('subscriptions not effective');
      pub.event.emit(name, `sync-${k}`);
      await ds.sleep(20);
    }

    const payloads = [{ a: 1, b: [true, null] }, 'hello', 42.5, -7, true, false, null, undefined, [1, 'x']];
    for (const v of payloads) pub.event.emit(name, v);
    pub.event.emit(name);
    pub.event.emit(name, 'end');
    await s.waitForMessage(['E', 'EVT', name, 'Send']);
    const evts = s.received.filter((m) => m[0] === 'E' && m[1] === 'EVT' && !isSyncMsg(m)).map((m) => m.join('|'));
    assert.deepEqual(
      evts,
      [
        'O{"a":1,"b":[true,null]}',
        'Shello',
        'N42.5',
        'N-7',
        'T',
        'F',
        'L',
        'U',
        'O[1,"x"]',
        'U',
        'Send',
      ].map((d) => `E|EVT|${name}|${d}`)
    );

    await ds.waitFor(() => libGot.some((a) => a[0] === 'end'), 3000, 'the library subscriber to get the end marker');

    // a raw emit without a data field: forwarded as is, the library calls back with undefined
    const s0 = s.received.length;
    const l0 = libGot.length;
    rp.send('E', 'EVT', name);
    rp.send('E', 'EVT', name, 'Safter');
    await s.waitForMessage(['E', 'EVT', name, 'Safter'], 3000, s0);
    assert.deepEqual(s.texts().slice(s0), [`E|EVT|${name}`, `E|EVT|${name}|Safter`]);
    await ds.waitFor(() => libGot.length >= l0 + 2 && libGot.some((a) => a[0] === 'after'), 3000, 'the library subscriber to get both');
    const tail = libGot.slice(l0);
    assert.equal(tail.length, 2);
    assert.equal(tail[0][0], undefined);
    assert.deepEqual(tail[1], ['after']);
    // the raw publisher gets no echo
    await ds.sleep(100);
    assert.deepEqual(rp.received.filter((m) => m[0] === 'E' && m[1] === 'EVT'), []);
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
    await closeRaws(list);
  }
});

test('raw: a silent raw listener gets SP once and is skipped after listenResponseTimeout; a provider that joins meanwhile gets the name', { timeout: 15000 }, async () => {
  const prefix = ds.uid('ls-raw');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/x`;
  const list = [];
  const clients = [];
  try {
    const silent = await raw.connect(OPEN(), { auth: { username: 'silent' }, label: 'silent' });
    list.push(silent);
    const [p2, sub] = await ds.openAll(OPEN(), ['p2', 'bob'], clients);
    const m0 = silent.received.length;
    silent.send('E', 'L', pattern);
    await silent.waitForMessage(['E', 'A', 'L', pattern], 3000, m0);

    // only the silent listener exists when the name gets its first subscriber: it is asked
    const t0 = Date.now();
    sub.event.subscribe(name, () => {});
    await silent.waitForMessage(['E', 'SP', pattern, name], 3000, m0);
    const spAt = silent.receivedAt[silent.received.findIndex((m) => m.join('|') === `E|SP|${pattern}|${name}`)];

    // p2 starts listening while the silent listener's answer is pending
    const calls = [];
    p2.event.listen(pattern, (match, isSubscribed, response) => {
      calls.push([match, isSubscribed, Date.now()]);
      if (isSubscribed) response.accept();
    });
    await ds.waitWire(p2, `E|A|L|${pattern}`);
    await ds.waitFor(() => calls.length >= 1, 3000, 'p2 to be offered the name');
    assert.deepEqual(calls[0].slice(0, 2), [name, true]);
    const gap = calls[0][2] - spAt;
    assert.ok(gap >= 400, `p2 was offered the name ${gap} ms after the silent listener (listenResponseTimeout is 500 ms)`);
    assert.ok(calls[0][2] - t0 < 2500, 'p2 was offered the name too late');

    await ds.sleep(150);
    sub.event.unsubscribe(name);
    await ds.waitFor(() => calls.length >= 2, 3000, 'p2 to be told the subscription was removed');
    assert.deepEqual(calls[1].slice(0, 2), [name, false]);
    await ds.sleep(100);
    assert.deepEqual(silent.texts().slice(m0), [`E|A|L|${pattern}`, `E|SP|${pattern}|${name}`]);
    assert.equal(calls.length, 2);
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
    await closeRaws(list);
  }
});
