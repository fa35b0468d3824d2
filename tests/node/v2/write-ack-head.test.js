'use strict';
// 2.x-only record features with the real deepstream.io-client-js 2.3.4: write acknowledgements
// (`R|WA`), create-and-update (`R|CU`, version -1) and head (`R|HD`).
//
// 2.3.4 library behaviours (src/record/record.js, record-handler.js, checked against 2.4.1):
//   - record.set(data, cb) / record.set(path, value, cb) add the config field
//     `{"writeSuccess":true}` to `R|U` / `R|P`; `R|WA|<name>|[<versions>]|<typed error>` calls
//     cb with ONE argument, the decoded error (`L` -> null);
//   - record.set(sameData, cb) sends nothing and calls cb(null) by itself;
//   - client.record.setData(name, data[, cb]) / setData(name, path, value[, cb]) on a record the
//     client does not hold sends `R|CU|<name>|-1|...|<config>` (config `{}` without cb); the WA
//     lists `[-1]`;
//   - client.record.head(name, cb) exists in 2.3.4: `R|HD|<name>` -> `R|HD|<name>|<version>` ->
//     cb(null, <version as a number>); a missing record gives `R|E|HD|<name>|RECORD_NOT_FOUND`
//     -> cb('RECORD_NOT_FOUND', undefined) and no client 'error'. A client that holds the ready
//     record answers locally (record.version) without asking the server.
// Reference captures: captures/v2/lib-record-write-ack-v2.log, raw-record-write-ack-v2.log,
// raw-record-wire.log.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds2');
const raw = require('../lib/raw-ws');
const { firstCallback, callbackArgs } = require('../lib/util');
const { ready, snapshot } = require('../lib/ops');

const OPEN = () => ds.env('DS2_OPEN_URL');
const WS = '{"writeSuccess":true}';

/** calls fn(cb) and resolves with {args, out}: cb's first arguments; out.calls counts every call of cb */
const callback = (fn, what, timeoutMs = 3000) => firstCallback(fn, what, timeoutMs);

const head = (client, name, timeoutMs = 4000) => callbackArgs((cb) => client.record.head(name, cb), `${client.label}: record.head(${name})`, timeoutMs);

const recordSent = (client, name, from = 0) => ds.sentTexts(client, from).filter((t) => t.startsWith('R|') && t.split('|').includes(name));
const recordWire = (client, name, from = 0) => ds.wireTexts(client, from).filter((t) => t.startsWith('R|') && t.split('|').includes(name));

test('write ack: record.set(data, cb) and record.set(path, value, cb) -> R|WA -> cb(null); the subscriber gets the update', { timeout: 15000 }, async () => {
  const name = `${ds.uid('wa')}/x`;
  const clients = [];
  try {
    const [a, b] = await ds.openAll(OPEN(), ['alice', 'bob'], clients, ds.uid);
    const recA = await ready(a.record.getRecord(name), 'alice');
    const recB = await ready(b.record.getRecord(name), 'bob');
    const a0 = a.sent.length;
    const w0 = a.wire.length;
    const b0 = b.wire.length;

    const r1 = await callback((cb) => recA.set({ ok: 1 }, cb), 'set(data, cb)');
    assert.deepEqual(r1.args, [null]);
    assert.deepEqual(recordSent(a, name, a0), [`R|U|${name}|1|{"ok":1}|${WS}`]);
    assert.deepEqual(recordWire(a, name, w0), [`R|WA|${name}|[1]|L`]);

    const r2 = await callback((cb) => recA.set('deep.path', 'v', cb), 'set(path, value, cb)');
    assert.deepEqual(r2.args, [null]);
    assert.deepEqual(recordSent(a, name, a0), [`R|U|${name}|1|{"ok":1}|${WS}`, `R|P|${name}|2|deep.path|Sv|${WS}`]);
    assert.deepEqual(recordWire(a, name, w0), [`R|WA|${name}|[1]|L`, `R|WA|${name}|[2]|L`]);

    await ds.waitFor(() => recB.version === 2, 3000, () => `bob to reach version 2 (has ${recB.version})`);
    assert.deepEqual(recB.get(), { ok: 1, deep: { path: 'v' } });
    // 2.4.1 forwards the writer's message verbatim, write-ack config field included; the
    // subscriber gets no WA
    assert.deepEqual(recordWire(b, name, b0), [`R|U|${name}|1|{"ok":1}|${WS}`, `R|P|${name}|2|deep.path|Sv|${WS}`]);

    // setting the same data again: nothing is sent, the callback still gets null
    const s0 = a.sent.length;
    const r3 = await callback((cb) => recA.set({ ok: 1, deep: { path: 'v' } }, cb), 'set(same data, cb)');
    assert.deepEqual(r3.args, [null]);
    await ds.sleep(100);
    assert.deepEqual(recordSent(a, name, s0), []);
    for (const r of [r1, r2, r3]) assert.equal(r.out.calls, 1);
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('write ack: record.set(data, cb) on a fresh record (before it is ready) is sent once ready and acked', { timeout: 15000 }, async () => {
  const name = `${ds.uid('wa-fresh')}/x`;
  const clients = [];
  try {
    const a = await ds.open(OPEN(), { username: ds.uid('alice') }, 'alice');
    clients.push(a);
    const a0 = a.sent.length;
    const rec = a.record.getRecord(name);
    assert.equal(rec.isReady, false);
    const r = await callback((cb) => rec.set({ fresh: true }, cb), 'set on a fresh record');
    assert.deepEqual(r.args, [null]);
    assert.equal(rec.version, 1);
    assert.deepEqual(recordSent(a, name, a0), [`R|CR|${name}`, `R|U|${name}|1|{"fresh":true}|${WS}`]);
    assert.deepEqual(recordWire(a, name), [`R|A|S|${name}`, `R|R|${name}|0|{}`, `R|WA|${name}|[1]|L`]);

    const b = await ds.open(OPEN(), { username: ds.uid('bob') }, 'bob');
    clients.push(b);
    assert.deepEqual(await snapshot(b, name), [null, { fresh: true }]);
    assert.ok(ds.wireTexts(b).includes(`R|R|${name}|1|{"fresh":true}`));
    assert.equal(r.out.calls, 1);
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('write ack: setData(name, data, cb) on a record the client does not hold -> R|CU with -1 -> R|WA [-1] -> cb(null)', { timeout: 15000 }, async () => {
  const prefix = ds.uid('cu');
  const name = `${prefix}/x`;
  const name2 = `${prefix}/y`;
  const clients = [];
  try {
    const [a, b] = await ds.openAll(OPEN(), ['alice', 'bob'], clients, ds.uid);
    const a0 = a.sent.length;
    const w0 = a.wire.length;

    // a record that does not exist yet: CU creates it at version 1
    const r1 = await callback((cb) => a.record.setData(name, { z: 1 }, cb), 'setData(name, data, cb)');
    assert.deepEqual(r1.args, [null]);
    assert.deepEqual(recordSent(a, name, a0), [`R|CU|${name}|-1|{"z":1}|${WS}`]);
    assert.deepEqual(recordWire(a, name, w0), [`R|WA|${name}|[-1]|L`]);
    assert.deepEqual(await snapshot(b, name), [null, { z: 1 }]);
    assert.ok(ds.wireTexts(b).includes(`R|R|${name}|1|{"z":1}`), JSON.stringify(ds.wireTexts(b)));

    // again, and with a path: the version goes on counting
    const r2 = await callback((cb) => a.record.setData(name, 'p.q', [1, 'two'], cb), 'setData(name, path, value, cb)');
    assert.deepEqual(r2.args, [null]);
    assert.deepEqual(recordSent(a, name, a0).slice(1), [`R|CU|${name}|-1|p.q|O[1,"two"]|${WS}`]);
    assert.deepEqual(recordWire(a, name, w0), [`R|WA|${name}|[-1]|L`, `R|WA|${name}|[-1]|L`]);
    const b1 = b.wire.length;
    assert.deepEqual(await snapshot(b, name), [null, { z: 1, p: { q: [1, 'two'] } }]);
    assert.ok(ds.wireTexts(b, b1).includes(`R|R|${name}|2|{"z":1,"p":{"q":[1,"two"]}}`), JSON.stringify(ds.wireTexts(b, b1)));

    // without a callback: config `{}`, no write ack
    const s0 = a.sent.length;
    const ww = a.wire.length;
    a.record.setData(name2, { nocb: true });
    const b2 = b.wire.length;
    // no ack to wait for: poll bob's snapshot until the CU has been applied
    let snap;
    for (let i = 0; i < 100; i++) {
      snap = await snapshot(b, name2);
      if (snap[0] === null) break;
      await ds.sleep(20);
    }
    assert.deepEqual(snap, [null, { nocb: true }]);
    assert.ok(ds.wireTexts(b, b2).includes(`R|R|${name2}|1|{"nocb":true}`));
    assert.deepEqual(recordSent(a, name2, s0), [`R|CU|${name2}|-1|{"nocb":true}|{}`]);
    await ds.sleep(100);
    assert.deepEqual(recordWire(a, name2, ww), [], 'a write ack without writeSuccess');

    // the promise form
    await ds.withTimeout(a.record.setDataWithAck(name, { replaced: true }), 3000, 'setDataWithAck');
    assert.deepEqual(await snapshot(b, name), [null, { replaced: true }]);

    for (const r of [r1, r2]) assert.equal(r.out.calls, 1);
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('head: client.record.head(name, cb) -> (null, version) from the server; RECORD_NOT_FOUND for a missing record; local answer for a held record', { timeout: 15000 }, async () => {
  const prefix = ds.uid('head');
  const name = `${prefix}/x`;
  const missing = `${prefix}/missing`;
  const clients = [];
  try {
    const [a, b] = await ds.openAll(OPEN(), ['alice', 'bob'], clients, ds.uid);
    const recA = await ready(a.record.getRecord(name), 'alice');
    await callback((cb) => recA.set({ v: 1 }, cb), 'set v1');
    await callback((cb) => recA.set('w', 2, cb), 'set v2');
    await callback((cb) => recA.set({ v: 3 }, cb), 'set v3');

    // bob does not hold the record: HD goes to the server
    const b0 = b.sent.length;
    const w0 = b.wire.length;
    const h = await head(b, name);
    assert.deepEqual(h, [null, 3]);
    assert.deepEqual(ds.sentTexts(b, b0), [`R|HD|${name}`]);
    assert.deepEqual(ds.wireTexts(b, w0), [`R|HD|${name}|3`]);

    // a missing record
    const w1 = b.wire.length;
    const m = await head(b, missing);
    assert.equal(m.length, 2);
    assert.equal(m[0], 'RECORD_NOT_FOUND');
    assert.equal(m[1], undefined);
    assert.deepEqual(ds.wireTexts(b, w1), [`R|E|HD|${missing}|RECORD_NOT_FOUND`]);

    // head does not create or subscribe: a later write does not reach bob
    const w2 = b.wire.length;
    await callback((cb) => recA.set({ v: 4 }, cb), 'set v4');
    assert.deepEqual(await head(b, name), [null, 4]);
    assert.deepEqual(ds.wireTexts(b, w2), [`R|HD|${name}|4`]);
    assert.deepEqual(await head(b, missing), ['RECORD_NOT_FOUND', undefined]);

    // alice holds the ready record: answered locally, nothing sent
    const a0 = a.sent.length;
    assert.deepEqual(await head(a, name), [null, 4]);
    assert.deepEqual(ds.sentTexts(a, a0), []);

    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('write ack and head on the wire (raw websocket): U/P with writeSuccess, CU -1, HD', { timeout: 15000 }, async () => {
  const prefix = ds.uid('rawwa');
  const name = `${prefix}/x`;
  const upsert = `${prefix}/upsert`;
  const raws = [];
  try {
    const c = await raw.connect(OPEN(), { auth: { username: ds.uid('raw') }, label: 'raw' });
    raws.push(c);
    let from = c.received.length;
    c.send('R', 'CR', name);
    await c.waitForMessage(['R', 'R', name, '0', '{}'], 3000, from);
    assert.deepEqual(c.texts(from), [`R|A|S|${name}`, `R|R|${name}|0|{}`]);

    from = c.received.length;
    c.send('R', 'U', name, 1, '{"a":1}', WS);
    await c.waitForMessage(['R', 'WA', name, '[1]', 'L'], 3000, from);
    c.send('R', 'P', name, 2, 'a', 'N2', WS);
    await c.waitForMessage(['R', 'WA', name, '[2]', 'L'], 3000, from);
    c.send('R', 'HD', name);
    await c.waitForMessage(['R', 'HD', name, '2'], 3000, from);
    // a write without the config gets no ack
    c.send('R', 'U', name, 3, '{"a":3}');
    c.send('R', 'HD', name);
    await c.waitForMessage(['R', 'HD', name, '3'], 3000, from);
    assert.deepEqual(c.texts(from), [`R|WA|${name}|[1]|L`, `R|WA|${name}|[2]|L`, `R|HD|${name}|2`, `R|HD|${name}|3`]);

    from = c.received.length;
    c.send('R', 'CU', upsert, -1, '{"z":1}', WS);
    await c.waitForMessage(['R', 'WA', upsert, '[-1]', 'L'], 3000, from);
    c.send('R', 'SN', upsert);
    await c.waitForMessage(['R', 'R', upsert, '1', '{"z":1}'], 3000, from);
    c.send('R', 'HD', `${prefix}/nope`);
    await c.waitForMessage(['R', 'E', 'HD', `${prefix}/nope`, 'RECORD_NOT_FOUND'], 3000, from);
    assert.deepEqual(c.texts(from), [
      `R|WA|${upsert}|[-1]|L`,
      `R|R|${upsert}|1|{"z":1}`,
      `R|E|HD|${prefix}/nope|RECORD_NOT_FOUND`,
    ]);
    assert.equal(c.closed, false);
  } finally {
    await Promise.all(raws.map((c) => c.close()));
  }
});
