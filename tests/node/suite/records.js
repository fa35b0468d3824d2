'use strict';
// Records and lists with the real client library of a dialect (tests/node/lib/dialect.js: 1.1.1
// over TCP, 2.3.4 over websocket), plus raw observers (tests/node/lib/raw.js, raw-ws.js) where
// the library's own local copy can't be trusted (PROTOCOL.md §7). Run by
// tests/node/v1/records.test.js and tests/node/v2/records.test.js.
//
// Library behaviours these tests rely on (src/record/*.js of 1.1.1 and 2.3.4, checked against
// deepstream 1.1.1 and 2.4.1):
//   - record.version is a number maintained locally: set() increments it before sending;
//   - record.get() returns deep copies (JSON round trip), so plain objects/arrays;
//   - client.record.snapshot(name, cb) / has(name, cb) answer locally, without a server round trip,
//     when the client itself holds the record (snapshot only once it is ready); the tests
//     therefore ask from clients that don't hold the record;
//   - snapshot callback: (null, data) for an existing record, ('RECORD_NOT_FOUND', undefined) for
//     a missing one (from `R|E|SN|<name>|RECORD_NOT_FOUND`); has callback: (null, true|false);
//     neither emits a client 'error';
//   - Record has a `hasProvider` property and emits 'hasProviderChanged' (bool) on `R|SH`;
//   - a subscriber whose record is deleted by another client gets `R|A|D|<name>` and the library
//     emits 'delete' on its Record (and List) and destroys it.
// 2.4.1 server quirk the 2.x dialect allows for (dialect.staleUpdates, PROTOCOL.md 3.4): a client
// whose read (`R|CR`) overtakes the broadcast of writes in flight gets `R|R|<name>|<v>|...` and
// then those `R|U` again (versions <= v); the 2.3.4 client ignores a duplicate with equal data,
// and otherwise REMOTE_WINS-merges back down and replays them. Write acks and head (2.x only):
// tests/node/v2/write-ack-head.test.js.
// Reference captures: captures/v1 and captures/v2, lib-record-*.log, lib-list.log, raw-record-wire.log.
const test = require('node:test');
const assert = require('node:assert/strict');
const { ready, snapshot, has, snapshotUntil, recordTexts, isWrite, replayWrites, settledWrites, rawObserver } = require('../lib/ops');
const { closeRaws } = require('../lib/wire');

module.exports = function recordsSuite(dialect) {
  const { ds, raw, OPEN } = dialect;

  /**
   * drops `R|U|<name>|<v>|...` with v <= upTo from texts (2.x): the duplicate of an update that
   * was in flight while the client read the record (PROTOCOL.md 3.4), which may arrive after the read
   */
  function withoutStale(texts, name, upTo) {
    if (!dialect.staleUpdates) return texts;
    const prefix = `R|U|${name}|`;
    return texts.filter((t) => !(t.startsWith(prefix) && Number(t.slice(prefix.length).split('|')[0]) <= upTo));
  }

  /** a raw client subscribed to record `name` with R|CR; resolves with {c, readVersion, readData, from} */
  const observer = (name, label) => rawObserver(raw.connect(OPEN(), { auth: { username: label }, label }), name);

  test('records create/set/get: whole and path sets (a.b, list[1]) reach the other client, versions count up, no echo', { timeout: 20000 }, async () => {
    const name = `${ds.uid('rec')}/1`;
    const clients = [];
    try {
      const [a, b, c] = await ds.openAll(OPEN(), ['alice', 'bob', 'carol'], clients);

      const recA = a.record.getRecord(name);
      await ready(recA, 'alice');
      assert.equal(recA.version, 0);
      assert.deepEqual(recA.get(), {});
      assert.deepEqual(recordTexts(a, name), [`R|A|S|${name}`, `R|R|${name}|0|{}`]);

      const initial = { firstname: 'Ada', age: 36, a: { b: 1 }, list: ['x', 'y', 'z'] };
      recA.set(initial);
      assert.equal(recA.version, 1);
      // 2.x quirk (PROTOCOL.md 3.4): a subscriber that joins while the update is in flight can get
      // `R|R|<name>|1|...` and then `R|U|<name>|1|...` (same version twice), possibly after it was
      // already at version 1. The library ignores it (same data); with 2.x it is left out below.
      const dupV1 = `R|U|${name}|1|${JSON.stringify(initial)}`;
      const bobTexts = (from) => recordTexts(b, name, from).filter((t) => !(dialect.staleUpdates && t === dupV1));

      // bob reads the record; if his CR overtook alice's update he gets it as an R|U right after
      const recB = b.record.getRecord(name);
      await ready(recB, 'bob');
      await ds.waitFor(() => recB.version === 1, 3000, `bob to see version 1 (has ${recB.version})`);
      assert.deepEqual(recB.get(), initial);
      assert.equal(recB.get('a.b'), 1);
      assert.equal(recB.get('list[1]'), 'y');

      const gotAB = [];
      const gotList = [];
      const gotAll = [];
      recB.subscribe('a.b', (v) => gotAB.push(v));
      recB.subscribe('list[1]', (v) => gotList.push(v));
      recB.subscribe((v) => gotAll.push(v));
      const b0 = b.wire.length;

      recA.set('a.b', 2);
      recA.set('list[1]', 'Y');
      recA.set('age', 37);
      assert.equal(recA.version, 4);
      await ds.waitFor(() => recB.version === 4, 3000, `bob to see version 4 (has ${recB.version})`);
      assert.deepEqual(bobTexts(b0), [
        `R|P|${name}|2|a.b|N2`,
        `R|P|${name}|3|list[1]|SY`,
        `R|P|${name}|4|age|N37`,
      ]);
      assert.deepEqual(gotAB, [2]);
      assert.deepEqual(gotList, ['Y']);
      assert.equal(gotAll.length, 3);
      const afterPatches = { firstname: 'Ada', age: 37, a: { b: 2 }, list: ['x', 'Y', 'z'] };
      assert.deepEqual(gotAll[2], afterPatches);
      assert.deepEqual(recB.get(), afterPatches);

      // a whole-record set replaces everything: a.b disappears, list[1] is unchanged (no callback)
      const grace = { firstname: 'Grace', list: ['x', 'Y', 'z'] };
      recA.set(grace);
      await ds.waitFor(() => recB.version === 5, 3000, `bob to see version 5 (has ${recB.version})`);
      assert.deepEqual(bobTexts(b0).slice(3), [`R|U|${name}|5|${JSON.stringify(grace)}`]);
      assert.deepEqual(gotAB, [2, undefined]);
      assert.deepEqual(gotList, ['Y']);
      assert.deepEqual(gotAll[3], grace);

      // the other direction: bob patches, alice's path subscription fires
      const gotBy = [];
      recA.subscribe('by', (v) => gotBy.push(v));
      recB.set('by', 'bob');
      assert.equal(recB.version, 6);
      await ds.waitFor(() => recA.version === 6, 3000, `alice to see version 6 (has ${recA.version})`);
      assert.deepEqual(gotBy, ['bob']);
      const final = { firstname: 'Grace', list: ['x', 'Y', 'z'], by: 'bob' };
      assert.deepEqual(recA.get(), final);

      // no echo: neither writer got its own writes back
      assert.deepEqual(recordTexts(a, name).filter((t) => /^R\|[UP]\|/.test(t)), [`R|P|${name}|6|by|Sbob`]);
      assert.deepEqual(
        bobTexts(b0).filter((t) => /^R\|[UP]\|/.test(t)).length,
        4,
        'bob got his own patch back'
      );

      // the server applied every patch (including the array path): a fresh reader sees the same
      assert.deepEqual(await snapshot(c, name), [null, final]);
      const recC = c.record.getRecord(name);
      await ready(recC, 'carol');
      assert.equal(recC.version, 6);
      assert.deepEqual(recC.get(), final);
      assert.deepEqual(recordTexts(c, name).slice(-2), [`R|A|S|${name}`, `R|R|${name}|6|${JSON.stringify(final)}`]);

      for (const cl of clients) assert.deepEqual(cl.errors, [], `${cl.label} had errors`);
    } finally {
      await ds.closeAll(clients);
    }
  });

  test('records snapshot and has: existing and missing records, exact callback arguments', { timeout: 15000 }, async () => {
    const prefix = ds.uid('snap');
    const name = `${prefix}/exists`;
    const missing = `${prefix}/missing`;
    const missing2 = `${prefix}/missing2`;
    const clients = [];
    try {
      const [a, b] = await ds.openAll(OPEN(), ['alice', 'bob'], clients);
      const recA = a.record.getRecord(name);
      await ready(recA, 'alice');
      const data = { x: 1, nested: { y: [1, 2, { z: null }] }, s: 'str' };
      recA.set(data);

      // bob does not hold the record: snapshot and has go to the server
      const snap = await snapshotUntil(b, name, (d) => d && d.x === 1);
      assert.deepEqual(snap, [null, data]);
      assert.ok(ds.wireTexts(b).includes(`R|R|${name}|1|${JSON.stringify(data)}`), 'the snapshot reply is R|R with version 1');
      assert.deepEqual(await has(b, name), [null, true]);
      assert.ok(ds.wireTexts(b).includes(`R|H|${name}|T`));

      assert.deepEqual(await has(b, missing), [null, false]);
      assert.ok(ds.wireTexts(b).includes(`R|H|${missing}|F`));

      const b0 = b.wire.length;
      const miss = await snapshot(b, missing2);
      assert.deepEqual(miss, ['RECORD_NOT_FOUND', undefined]);
      assert.equal(miss.length, 2);
      assert.deepEqual(ds.wireTexts(b, b0), [`R|E|SN|${missing2}|RECORD_NOT_FOUND`]);

      // neither has nor snapshot creates the record
      assert.deepEqual(await snapshot(b, missing), ['RECORD_NOT_FOUND', undefined]);
      assert.deepEqual(await has(b, missing2), [null, false]);

      // bob still holds nothing, and nothing was subscribed: a later write reaches him not at all
      const b1 = b.wire.length;
      recA.set('x', 2);
      await snapshotUntil(b, name, (d) => d && d.x === 2);
      assert.deepEqual(b.wire.slice(b1).filter(isWrite(name)), [], 'snapshot subscribed bob to the record');

      assert.deepEqual(a.errors, []);
      assert.deepEqual(b.errors, [], 'RECORD_NOT_FOUND must go to the snapshot callback only, not to the error event');
    } finally {
      await ds.closeAll(clients);
    }
  });

  test('records discard and delete: a discarder gets no more updates; the delete reaches the other subscriber; the record is gone', { timeout: 15000 }, async () => {
    const name = `${ds.uid('del')}/x`;
    const clients = [];
    try {
      const [a, b, c, d] = await ds.openAll(OPEN(), ['alice', 'bob', 'carol', 'dave'], clients);
      const recA = a.record.getRecord(name);
      await ready(recA, 'alice');
      recA.set({ v: 1 });
      const recB = b.record.getRecord(name);
      const recC = c.record.getRecord(name);
      await Promise.all([ready(recB, 'bob'), ready(recC, 'carol')]);
      await ds.waitFor(() => recB.version === 1 && recC.version === 1, 3000, 'bob and carol to see version 1');
      // let a 2.x duplicate `R|U|<name>|1` (PROTOCOL.md 3.4) land before bob discards: arriving
      // after the discard, the library reports it as UNSOLICITED_MESSAGE
      if (dialect.staleUpdates) await ds.sleep(100);
      assert.deepEqual(recB.get(), { v: 1 });
      assert.deepEqual(recC.get(), { v: 1 });

      const events = { b: [], c: [], a: [] };
      recB.on('discard', () => events.b.push('discard'));
      recB.on('delete', () => events.b.push('delete'));
      recC.on('delete', () => events.c.push('delete'));
      recC.on('discard', () => events.c.push('discard'));
      recA.on('delete', () => events.a.push('delete'));

      // bob discards
      recB.discard();
      await ds.waitWire(b, `R|A|US|${name}`);
      assert.deepEqual(events.b, ['discard']);
      assert.equal(recB.isDestroyed, true);
      const bMark = b.wire.length;

      // alice writes: carol gets it, bob doesn't
      const c0 = c.wire.length;
      recA.set({ v: 2 });
      await ds.waitFor(() => recC.version === 2, 3000, 'carol to see version 2');
      assert.deepEqual(withoutStale(recordTexts(c, name, c0), name, 1), [`R|U|${name}|2|{"v":2}`]);

      // alice deletes: she gets the ack, carol gets the same R|A|D and her library emits 'delete'
      recA.delete();
      await ds.waitWire(a, `R|A|D|${name}`);
      await ds.waitWire(c, `R|A|D|${name}`, 3000, c0);
      await ds.waitFor(() => events.c.length > 0, 3000, "carol's record to emit 'delete'");
      assert.deepEqual(events.a, ['delete']);
      assert.deepEqual(events.c, ['delete']);
      assert.equal(recC.isDestroyed, true);
      assert.equal(recA.isDestroyed, true);
      assert.deepEqual(withoutStale(recordTexts(c, name, c0), name, 1), [`R|U|${name}|2|{"v":2}`, `R|A|D|${name}`]);

      // bob (who no longer holds it) and dave (who never did) ask the server: it's gone
      assert.deepEqual(await has(b, name), [null, false]);
      assert.deepEqual(await has(d, name), [null, false]);
      assert.deepEqual(await snapshot(d, name), ['RECORD_NOT_FOUND', undefined]);

      // a new record with the same name starts from scratch; the old subscribers were dropped
      const c1 = c.wire.length;
      const recD = d.record.getRecord(name);
      await ready(recD, 'dave');
      assert.equal(recD.version, 0);
      assert.deepEqual(recD.get(), {});
      recD.set({ again: true });
      const e = await ds.open(OPEN(), { username: 'erin' }, 'erin');
      clients.push(e);
      await snapshotUntil(e, name, (data) => data && data.again === true);
      await ds.sleep(150);
      assert.deepEqual(c.wire.slice(c1).filter(isWrite(name)), [], 'carol was still subscribed after the delete');
      assert.deepEqual(b.wire.slice(bMark).filter(isWrite(name)), [], 'bob got updates after discarding');
      assert.deepEqual(events.b, ['discard']);

      for (const cl of clients) assert.deepEqual(cl.errors, [], `${cl.label} had errors`);
    } finally {
      await ds.closeAll(clients);
    }
  });

  test('lists: setEntries / addEntry / removeEntry reach the other client, whose entry events fire; snapshot shows the array', { timeout: 15000 }, async () => {
    const name = `${ds.uid('list')}/l`;
    const clients = [];
    try {
      const [a, b, c] = await ds.openAll(OPEN(), ['alice', 'bob', 'carol'], clients);
      const listA = a.record.getList(name);
      await ready(listA, 'alice');
      assert.deepEqual(listA.getEntries(), []);
      assert.equal(listA.isEmpty(), true);
      const a0 = a.wire.length;
      listA.setEntries(['x', 'y']);
      listA.addEntry('z');
      listA.removeEntry('x');
      listA.addEntry('w', 1);
      assert.deepEqual(listA.getEntries(), ['y', 'w', 'z']);

      const listB = b.record.getList(name);
      await ready(listB, 'bob');
      await ds.waitFor(() => listB._record.version === 4, 3000, "bob's list to reach version 4");
      if (dialect.staleUpdates) {
        // 2.x (PROTOCOL.md 3.4): when bob's read overtakes the broadcasts of alice's 4 writes, he
        // gets `R|R|<name>|4|...` and then `R|U` versions 1..4 again; the library's REMOTE_WINS
        // merge replays them (its version goes back to 1 and up to 4 again). Let them land first.
        await ds.sleep(100);
        await ds.waitFor(() => listB._record.version === 4, 3000, "bob's list to be back at version 4");
      }
      assert.deepEqual(listB.getEntries(), ['y', 'w', 'z']);
      assert.deepEqual(await snapshot(c, name), [null, ['y', 'w', 'z']]);

      const seen = [];
      const added = [];
      const removed = [];
      listB.subscribe((entries) => seen.push(entries));
      listB.on('entry-added', (entry, index) => added.push([entry, index]));
      listB.on('entry-removed', (entry, index) => removed.push([entry, index]));
      const b0 = b.wire.length;
      listA.addEntry('q');
      listA.removeEntry('y');
      await ds.waitFor(() => listB._record.version === 6, 3000, "bob's list to reach version 6");
      assert.deepEqual(withoutStale(recordTexts(b, name, b0), name, 4), [
        `R|U|${name}|5|["y","w","z","q"]`,
        `R|U|${name}|6|["w","z","q"]`,
      ]);
      assert.deepEqual(seen, [
        ['y', 'w', 'z', 'q'],
        ['w', 'z', 'q'],
      ]);
      assert.deepEqual(added, [['q', 3]]);
      assert.deepEqual(removed, [['y', 0]]);

      // bob writes back, alice sees it
      listB.addEntry('b-was-here', 0);
      await ds.waitFor(() => listA._record.version === 7, 3000, "alice's list to reach version 7");
      assert.deepEqual(listA.getEntries(), ['b-was-here', 'w', 'z', 'q']);
      assert.deepEqual(await snapshotUntil(c, name, (d) => Array.isArray(d) && d.length === 4), [null, ['b-was-here', 'w', 'z', 'q']]);

      // what alice sent: whole-array updates only
      assert.deepEqual(
        a.wire.slice(a0).filter(isWrite(name)).map((m) => m.join('|')),
        [`R|U|${name}|7|["b-was-here","w","z","q"]`]
      );
      for (const cl of clients) assert.deepEqual(cl.errors, [], `${cl.label} had errors`);
    } finally {
      await ds.closeAll(clients);
    }
  });

  test('records concurrent writers converge: raw observers see one gapless version sequence, a fresh reader the last state', { timeout: 30000 }, async (t) => {
    const name = `${ds.uid('conc')}/c`;
    const N_SETS = 30;
    const clients = [];
    const raws = [];
    try {
      const o1 = await observer(name, 'obs1');
      raws.push(o1.c);
      const o2 = await observer(name, 'obs2');
      raws.push(o2.c);
      assert.equal(o1.readVersion, 0);
      assert.equal(o2.readVersion, 0);

      const [w1, w2] = await ds.openAll(OPEN(), ['w1', 'w2'], clients);
      const r1 = w1.record.getRecord(name);
      const r2 = w2.record.getRecord(name);
      await Promise.all([ready(r1, 'w1'), ready(r2, 'w2')]);

      // interleaved quick writes; every 5th is a path set (R|P), the rest whole-record sets (R|U)
      for (let i = 0; i < N_SETS; i++) {
        for (const [who, r] of [
          ['w1', r1],
          ['w2', r2],
        ]) {
          if (i % 5 === 4) r.set('n', `${who}-${i}`);
          else r.set({ by: who, i, n: `${who}-${i}` });
        }
        if (i % 3 === 0) await ds.sleep(Math.floor(Math.random() * 4));
      }

      // wait until the observers have been quiet for a while (the writers' merges settle); the
      // heartbeat (2.x: `C|PI`, every heartbeatInterval) may arrive between any two updates
      const [seq1, seq2] = await settledWrites([o1, o2], dialect.isHeartbeat, 500);
      const bad = seq1.concat(seq2).filter((m) => !isWrite(name)(m));
      assert.deepEqual(bad, [], 'the observers received something other than R|U / R|P');
      assert.ok(seq1.length > 0, 'the observers saw no updates at all');
      // both observers received exactly the same messages, in the same order
      assert.deepEqual(seq2.map((m) => m.join('|')), seq1.map((m) => m.join('|')));
      // versions 1, 2, 3, ... with none missing or repeated
      const versions = seq1.map((m) => Number(m[3]));
      assert.deepEqual(
        versions,
        versions.map((_, k) => k + 1),
        `versions not gapless: ${versions.join(',')}`
      );

      // replay the sequence (paths are top-level keys) to get the state the server must hold
      const state = replayWrites(o1.readData, seq1);
      const lastMsg = seq1[seq1.length - 1];
      const lastVersion = versions[versions.length - 1];

      // a fresh raw reader reads the last version the observers saw, with the same data
      const reader = await raw.connect(OPEN(), { auth: { username: 'reader' }, label: 'reader' });
      raws.push(reader);
      const r0 = reader.received.length;
      reader.send('R', 'SN', name);
      const snap = await reader.waitFor((m) => m[0] === 'R' && m[2] === name, 3000, r0, `the snapshot of ${name}`);
      assert.equal(snap[1], 'R', `snapshot failed: ${snap.join('|')}`);
      assert.equal(Number(snap[3]), lastVersion, 'the snapshot version is not the last version the observers saw');
      if (lastMsg[1] === 'U') assert.deepEqual(JSON.parse(snap[4]), JSON.parse(lastMsg[4]));
      assert.deepEqual(JSON.parse(snap[4]), state, 'the snapshot data is not the replayed update sequence');

      // the writers saw only what they are allowed to (VERSION_EXISTS is handled by the merge)
      for (const w of [w1, w2]) {
        const errs = w.wire.filter((m) => m[0] === 'R' && m[1] === 'E' && m[2] !== 'VERSION_EXISTS');
        assert.deepEqual(errs, [], `${w.label} got record errors`);
        assert.deepEqual(w.errors, [], `${w.label} had errors`);
      }
      const conflicts = [w1, w2].map((w) => w.wire.filter((m) => m[0] === 'R' && m[1] === 'E' && m[2] === 'VERSION_EXISTS').length);
      const patches = seq1.filter((m) => m[1] === 'P').length;
      t.diagnostic(
        `concurrent writers: ${versions.length} accepted versions (${patches} R|P), last message ${lastMsg[1]}, VERSION_EXISTS w1/w2: ${conflicts.join('/')}`
      );
    } finally {
      await ds.closeAll(clients);
      await closeRaws(raws);
    }
  });

  test('record listen has-provider: an accepting provider sets hasProvider on every subscriber; unlisten clears it', { timeout: 15000 }, async () => {
    const prefix = ds.uid('rl');
    const pattern = `${prefix}/.*`;
    const name = `${prefix}/1`;
    const name2 = `${prefix}/2`;
    const clients = [];
    try {
      const [p, s, s2] = await ds.openAll(OPEN(), ['provider', 'bob', 'carol'], clients);
      const calls = [];
      p.record.listen(pattern, function (match, isSubscribed, response) {
        calls.push([match, isSubscribed, arguments.length]);
        if (isSubscribed) response.accept();
      });
      await ds.waitWire(p, `R|A|L|${pattern}`);

      const rec = s.record.getRecord(name);
      assert.equal(rec.hasProvider, false, `hasProvider exists in ${dialect.client} and starts false`);
      const changes = [];
      rec.on('hasProviderChanged', (v) => changes.push(v));
      await ready(rec, 'bob');
      await ds.waitFor(() => rec.hasProvider === true, 3000, 'bob: hasProvider to become true');
      assert.deepEqual(changes, [true]);
      assert.deepEqual(calls, [[name, true, 3]]);
      assert.ok(ds.wireTexts(s).includes(`R|SH|${name}|T`));

      // a later subscriber of the provided record is told straight away
      const rec2 = s2.record.getRecord(name);
      const changes2 = [];
      rec2.on('hasProviderChanged', (v) => changes2.push(v));
      await ready(rec2, 'carol');
      await ds.waitFor(() => rec2.hasProvider === true, 3000, 'carol: hasProvider to become true');
      assert.deepEqual(changes2, [true]);
      assert.deepEqual(calls.length, 1, 'the provider was asked again for a provided record');

      // a second record, provided too: when its only subscriber discards, the provider gets SR
      const other = s.record.getRecord(name2);
      await ready(other, 'bob');
      await ds.waitFor(() => other.hasProvider === true, 3000, 'bob: hasProvider of the second record');
      await ds.sleep(150); // let the accept land first (PROTOCOL.md 3.3 race)
      other.discard();
      await ds.waitFor(() => calls.length >= 3, 3000, 'the provider to be told the second record lost its subscriber');
      assert.deepEqual(calls, [
        [name, true, 3],
        [name2, true, 3],
        [name2, false, 2],
      ]);
      assert.ok(ds.wireTexts(p).includes(`R|SR|${pattern}|${name2}`));

      // the provider stops listening: both subscribers of the first record are told
      p.record.unlisten(pattern);
      await ds.waitWire(p, `R|A|UL|${pattern}`);
      await ds.waitFor(() => rec.hasProvider === false && rec2.hasProvider === false, 3000, 'hasProvider to become false for both');
      assert.deepEqual(changes, [true, false]);
      assert.deepEqual(changes2, [true, false]);
      assert.ok(ds.wireTexts(s).includes(`R|SH|${name}|F`));
      assert.ok(ds.wireTexts(s2).includes(`R|SH|${name}|F`));

      for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    } finally {
      await ds.closeAll(clients);
    }
  });
};
