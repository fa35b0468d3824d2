'use strict';
// Records across the three nodes of scripts/cluster-tests.sh: the real 1.1.1 (TCP) and 2.3.4
// (WebSocket) clients on different nodes, plus raw observers and readers (tests/node/lib/raw.js,
// raw-ws.js) where the libraries' local copies can't be trusted: under concurrent writers the
// 1.1.1 client's copy can roll back (docs/PROTOCOL.md §7), so convergence is judged by raw
// observers on every node (one identical, gapless version sequence) and fresh raw readers on
// every node (the last version and data).
// Library behaviours relied on: see tests/node/v1/records.test.js and tests/node/v2/records.test.js
// (snapshot/has answer locally for a record the client holds, so they are asked from clients that
// don't hold it).
const test = require('node:test');
const assert = require('node:assert/strict');
const ds1 = require('../lib/ds');
const ds2 = require('../lib/ds2');
const raw = require('../lib/raw');
const rawws = require('../lib/raw-ws');
const cluster = require('../lib/cluster');
const ops = require('../lib/ops');

const { openEach, ready, snapshot, has, recordTexts, isWrite, replayWrites, settledWrites, closeClients } = ops;

/** a raw client (TCP for 1.x, WebSocket for 2.x) */
function rawConnect(node, kind, label) {
  return kind === 'tcp' ? raw.connect(node.tcp, { auth: { username: label }, label }) : rawws.connect(node.http, { auth: { username: label }, label });
}

/** a raw client subscribed to `name` with R|CR -> {c, readVersion, readData, from} */
const rawObserver = (node, kind, name, label) => ops.rawObserver(rawConnect(node, kind, label), name);

test('records across nodes: set and path set from 1.1.1 on node 1 reach 2.3.4 on node 2 and back; snapshot/has from node 3; delete on node 2 reaches nodes 1 and 3', { timeout: 30000 }, async () => {
  const [n1, n2, n3] = cluster.nodes();
  const prefix = ds1.uid('crec');
  const name = `${prefix}/doc`;
  const missing = `${prefix}/missing`;
  const clients = [];
  try {
    const [a, b, c, d, e] = await openEach(clients, [
      [ds1, n1.tcp, 'alice', 'alice-v1@node1'],
      [ds2, n2.http, 'bob', 'bob-v2@node2'],
      [ds1, n3.tcp, 'carol', 'carol-v1@node3'],
      [ds2, n3.http, 'dave', 'dave-v2@node3'],
      [ds2, n1.http, 'erin', 'erin-v2@node1'],
    ]);

    const recA = await ready(a.record.getRecord(name), a.label);
    assert.equal(recA.version, 0);
    assert.deepEqual(recA.get(), {});
    assert.deepEqual(recordTexts(a, name), [`R|A|S|${name}`, `R|R|${name}|0|{}`]);

    const initial = { firstname: 'Ada', age: 36, a: { b: 1 }, list: ['x', 'y', 'z'] };
    recA.set(initial);
    assert.equal(recA.version, 1);

    // bob reads it on node 2 (his read may overtake alice's write: then the update follows)
    const recB = await ready(b.record.getRecord(name), b.label);
    await ds2.waitFor(() => recB.version === 1, 3000, () => `bob to see version 1 (has ${recB.version}; wire ${JSON.stringify(recordTexts(b, name))})`);
    assert.deepEqual(recB.get(), initial);
    const bobRead = recordTexts(b, name);
    assert.ok(
      JSON.stringify(bobRead) === JSON.stringify([`R|A|S|${name}`, `R|R|${name}|1|${JSON.stringify(initial)}`]) ||
        JSON.stringify(bobRead) === JSON.stringify([`R|A|S|${name}`, `R|R|${name}|0|{}`, `R|U|${name}|1|${JSON.stringify(initial)}`]),
      `bob's read: ${JSON.stringify(bobRead)}`
    );

    const gotAB = [];
    const gotList = [];
    recB.subscribe('a.b', (v) => gotAB.push(v));
    recB.subscribe('list[1]', (v) => gotList.push(v));
    const b0 = b.wire.length;
    recA.set('a.b', 2);
    recA.set('list[1]', 'Y');
    recA.set('age', 37);
    await ds2.waitFor(() => recB.version === 4, 3000, () => `bob to see version 4 (has ${recB.version})`);
    assert.deepEqual(recordTexts(b, name, b0), [`R|P|${name}|2|a.b|N2`, `R|P|${name}|3|list[1]|SY`, `R|P|${name}|4|age|N37`]);
    assert.deepEqual(gotAB, [2]);
    assert.deepEqual(gotList, ['Y']);
    assert.deepEqual(recB.get(), { firstname: 'Ada', age: 37, a: { b: 2 }, list: ['x', 'Y', 'z'] });

    // a whole set replaces everything
    const grace = { firstname: 'Grace', list: ['x', 'Y', 'z'] };
    recA.set(grace);
    await ds2.waitFor(() => recB.version === 5, 3000, () => `bob to see version 5 (has ${recB.version})`);
    assert.deepEqual(recordTexts(b, name, b0).slice(3), [`R|U|${name}|5|${JSON.stringify(grace)}`]);
    assert.deepEqual(gotAB, [2, undefined]);

    // the other way: bob (2.3.4, node 2) patches, alice's (1.1.1, node 1) path subscription fires
    const gotBy = [];
    recA.subscribe('by', (v) => gotBy.push(v));
    const a0 = a.wire.length;
    recB.set('by', 'bob');
    await ds2.waitFor(() => recA.version === 6, 3000, () => `alice to see version 6 (has ${recA.version})`);
    assert.deepEqual(recordTexts(a, name, a0), [`R|P|${name}|6|by|Sbob`]);
    assert.deepEqual(gotBy, ['bob']);
    const final = { firstname: 'Grace', list: ['x', 'Y', 'z'], by: 'bob' };
    assert.deepEqual(recA.get(), final);
    // no echo: alice got only bob's write, bob got none of his own
    assert.deepEqual(recordTexts(a, name).filter((x) => /^R\|[UP]\|/.test(x)), [`R|P|${name}|6|by|Sbob`]);
    assert.equal(recordTexts(b, name, b0).filter((x) => /^R\|[UP]\|/.test(x)).length, 4, 'bob got his own patch back');

    // node 3, from both libraries, without holding the record: snapshot and has
    assert.deepEqual(await snapshot(c, name), [null, final]);
    assert.deepEqual(await snapshot(d, name), [null, final]);
    assert.deepEqual(await has(c, name), [null, true]);
    assert.deepEqual(await has(d, name), [null, true]);
    assert.ok(ds2.wireTexts(d).includes(`R|R|${name}|6|${JSON.stringify(final)}`), JSON.stringify(ds2.wireTexts(d)));
    assert.deepEqual(await snapshot(c, missing), ['RECORD_NOT_FOUND', undefined]);
    assert.deepEqual(await snapshot(d, missing), ['RECORD_NOT_FOUND', undefined]);
    assert.deepEqual(await has(c, missing), [null, false]);
    assert.deepEqual(await has(d, missing), [null, false]);

    // a 1.1.1 subscriber on node 3 reads the current state
    const recC = await ready(c.record.getRecord(name), c.label);
    assert.equal(recC.version, 6);
    assert.deepEqual(recC.get(), final);

    // bob deletes on node 2: alice (node 1) and carol (node 3) get R|A|D and their records go
    const deleted = { a: [], c: [] };
    recA.on('delete', () => deleted.a.push('delete'));
    recC.on('delete', () => deleted.c.push('delete'));
    const marks = { a: a.wire.length, c: c.wire.length };
    recB.delete();
    await ds2.waitWire(b, `R|A|D|${name}`);
    await ds1.waitWire(a, `R|A|D|${name}`, 3000, marks.a);
    await ds1.waitWire(c, `R|A|D|${name}`, 3000, marks.c);
    await ds2.waitFor(() => deleted.a.length === 1 && deleted.c.length === 1, 3000, "alice's and carol's records to emit 'delete'");
    assert.equal(recA.isDestroyed, true);
    assert.equal(recC.isDestroyed, true);
    assert.deepEqual(recordTexts(a, name, marks.a), [`R|A|D|${name}`]);
    assert.deepEqual(recordTexts(c, name, marks.c), [`R|A|D|${name}`]);

    // gone on every node
    assert.deepEqual(await has(d, name), [null, false]);
    assert.deepEqual(await has(e, name), [null, false]);
    assert.deepEqual(await snapshot(e, name), ['RECORD_NOT_FOUND', undefined]);

    // the name starts from scratch; the old subscribers were dropped everywhere
    const aMark = a.wire.length;
    const recD = await ready(d.record.getRecord(name), d.label);
    assert.equal(recD.version, 0);
    assert.deepEqual(recD.get(), {});
    recD.set({ again: true });
    for (let i = 0; i < 100; i++) {
      const s = await snapshot(e, name);
      if (s[0] === null && s[1] && s[1].again === true) break;
      await ds1.sleep(20);
    }
    assert.deepEqual(await snapshot(e, name), [null, { again: true }]);
    await ds1.sleep(150);
    assert.deepEqual(a.wire.slice(aMark).filter(isWrite(name)), [], 'alice was still subscribed after the delete');

    for (const x of clients) assert.deepEqual(x.errors, [], `${x.label} had errors`);
  } finally {
    await closeClients(clients);
  }
});

/** a raw 2.x writer on `node`: acked writes with explicit versions until `successes` were accepted */
async function ackedWriter(node, name, who, successes) {
  const c = await rawConnect(node, 'ws', who);
  const accepted = [];
  let refused = 0;
  let next = 1;
  try {
    while (accepted.length < successes) {
      const from = c.received.length;
      c.send('R', 'CU', name, next, JSON.stringify({ by: who, n: next }), '{"writeSuccess":true}');
      const reply = await c.waitFor((m) => m[0] === 'R' && (m[1] === 'WA' || m[1] === 'E'), 5000, from, `a reply to ${who}'s write of version ${next}`);
      if (reply[1] === 'WA') {
        assert.deepEqual(reply, ['R', 'WA', name, `[${next}]`, 'L'], `${who}: ${reply.join('|')}`);
        accepted.push(next);
        next += 1;
      } else {
        assert.equal(reply[2], 'VERSION_EXISTS', `${who}: ${reply.join('|')}`);
        assert.equal(reply[3], name);
        assert.equal(reply[6], '{"writeSuccess":true}', `${who}: ${reply.join('|')}`);
        refused += 1;
        next = Number(reply[4]) + 1;
      }
      if (accepted.length % 4 === 0) await ds1.sleep(Math.floor(Math.random() * 3));
    }
    return { accepted, refused };
  } finally {
    await c.close();
  }
}

test('records concurrent writers on three nodes: raw observers on every node see one identical gapless sequence; no version accepted twice; fresh readers on every node read the last version and data', { timeout: 40000 }, async (t) => {
  const [n1, n2, n3] = cluster.nodes();
  const name = `${ds1.uid('cconc')}/c`;
  const N_SETS = 30;
  const W3 = 20;
  const clients = [];
  const raws = [];
  try {
    const observers = [await rawObserver(n1, 'tcp', name, 'obs1-tcp@node1'), await rawObserver(n2, 'ws', name, 'obs2-ws@node2'), await rawObserver(n3, 'tcp', name, 'obs3-tcp@node3')];
    raws.push(...observers.map((o) => o.c));
    for (const o of observers) assert.equal(o.readVersion, 0);
    // every node follows the record's channel before the writes start (the join race is the next test's)
    await cluster.waitRedis(cluster.sharedRedis().port, ['PUBSUB', 'NUMSUB', `cs:r:${name}`], (r) => Number(r[1]) === 3, 5000, `3 nodes on cs:r:${name}`);

    const [w1, w2] = await Promise.all([ds1.open(n1.tcp, { username: 'w1' }, 'w1-v1@node1'), ds2.open(n2.http, { username: 'w2' }, 'w2-v2@node2')]);
    clients.push(w1, w2);
    const r1 = await ready(w1.record.getRecord(name), w1.label);
    const r2 = await ready(w2.record.getRecord(name), w2.label);

    // a raw acknowledged writer on node 3 runs alongside the two libraries' interleaved quick sets
    const w3 = ackedWriter(n3, name, 'w3', W3);
    for (let i = 0; i < N_SETS; i++) {
      for (const [who, r] of [
        ['w1', r1],
        ['w2', r2],
      ]) {
        if (i % 5 === 4) r.set('n', `${who}-${i}`);
        else r.set({ by: who, i, n: `${who}-${i}` });
      }
      if (i % 3 === 0) await ds1.sleep(Math.floor(Math.random() * 4));
    }
    const { accepted: w3Accepted, refused: w3Refused } = await w3;

    // until the observers were quiet for a while and agree on the count (the merges settle)
    const isPing = (m) => m[0] === 'C' && m[1] === 'PI';
    const seqs = await settledWrites(observers, isPing, 600);
    const bad = seqs.flat().filter((m) => !isWrite(name)(m));
    assert.deepEqual(bad, [], 'an observer received something other than R|U / R|P');
    assert.ok(seqs[0].length > 0, 'no updates at all');
    const texts = seqs.map((s) => s.map((m) => m.join('|')));
    assert.deepEqual(texts[1], texts[0], 'the observers on nodes 1 and 2 saw different sequences');
    assert.deepEqual(texts[2], texts[0], 'the observers on nodes 1 and 3 saw different sequences');
    const versions = seqs[0].map((m) => Number(m[3]));
    assert.deepEqual(versions, versions.map((_, k) => k + 1), `versions not gapless: ${versions.join(',')}`);

    // the raw writer's acknowledged versions are in the sequence with its data: no other write
    // was accepted with the same version
    for (const v of w3Accepted) {
      assert.equal(texts[0][v - 1], `R|U|${name}|${v}|${JSON.stringify({ by: 'w3', n: v })}`, `w3 was acknowledged version ${v}, but the observers saw ${texts[0][v - 1]}`);
    }
    // (a library writer's merge after VERSION_EXISTS re-sends what it read, w3's data included,
    // under a later version: only `n` equal to the version marks w3's own accepted write)
    const w3Own = texts[0].filter((x, k) => x === `R|U|${name}|${k + 1}|${JSON.stringify({ by: 'w3', n: k + 1 })}`).map((x, k) => Number(x.split('|')[3]));
    assert.deepEqual(w3Own, w3Accepted, 'w3 writes that were not acknowledged reached the observers as accepted');

    // replay: the state every node must hold
    const state = replayWrites(observers[0].readData, seqs[0]);
    const lastVersion = versions[versions.length - 1];

    // fresh raw readers on every node (both transports): snapshot, has, head
    for (const [node, kind] of [
      [n1, 'tcp'],
      [n2, 'ws'],
      [n3, 'tcp'],
      [n3, 'ws'],
      [n1, 'ws'],
    ]) {
      const label = `reader-${kind}@${node.label}`;
      const reader = await rawConnect(node, kind, label);
      raws.push(reader);
      let from = reader.received.length;
      reader.send('R', 'SN', name);
      const snap = await reader.waitFor((m) => m[0] === 'R' && m[2] === name, 3000, from, `the snapshot of ${name}`);
      assert.equal(snap[1], 'R', `${label}: ${snap.join('|')}`);
      assert.equal(Number(snap[3]), lastVersion, `${label} read version ${snap[3]}, the observers' last is ${lastVersion}`);
      assert.deepEqual(JSON.parse(snap[4]), state, `${label}: the data is not the replayed sequence`);
      from = reader.received.length;
      reader.send('R', 'H', name);
      await reader.waitForMessage(['R', 'H', name, 'T'], 3000, from);
      if (kind === 'ws') {
        from = reader.received.length;
        reader.send('R', 'HD', name);
        await reader.waitForMessage(['R', 'HD', name, String(lastVersion)], 3000, from);
      }
    }
    // and the libraries' fresh readers
    const [f1, f2] = await Promise.all([ds1.open(n2.tcp, { username: 'fresh1' }, 'fresh-v1@node2'), ds2.open(n1.http, { username: 'fresh2' }, 'fresh-v2@node1')]);
    clients.push(f1, f2);
    assert.deepEqual(await snapshot(f1, name), [null, state]);
    assert.deepEqual(await snapshot(f2, name), [null, state]);

    for (const w of [w1, w2]) {
      const errs = w.wire.filter((m) => m[0] === 'R' && m[1] === 'E' && m[2] !== 'VERSION_EXISTS');
      assert.deepEqual(errs, [], `${w.label} got record errors`);
      assert.deepEqual(w.errors, [], `${w.label} had errors`);
    }
    const conflicts = [w1, w2].map((w) => w.wire.filter((m) => m[0] === 'R' && m[1] === 'E' && m[2] === 'VERSION_EXISTS').length);
    t.diagnostic(
      `concurrent writers: ${versions.length} versions (${seqs[0].filter((m) => m[1] === 'P').length} R|P); VERSION_EXISTS w1/w2/w3: ${conflicts.join('/')}/${w3Refused}; w3 acknowledged ${w3Accepted.length}`
    );
  } finally {
    await closeClients(clients);
    await Promise.all(raws.map((c) => c.close()));
  }
});

test('records: subscribers joining on other nodes while a record is being written get every version after the one they read, once, in order', { timeout: 30000 }, async (t) => {
  // A node starts following a record's channel when its first subscriber comes; the read that
  // answers R|CR and the channel subscription race with the writes of other nodes. Whatever the
  // order, a subscriber that read version v must then get v+1, v+2, ... with none missing,
  // repeated or older, and no update before its read.
  const [n1, n2, n3] = cluster.nodes();
  const name = `${ds1.uid('cjoin')}/j`;
  const RUN_MS = 2500;
  const raws = [];
  try {
    const writer = await rawConnect(n3, 'ws', 'writer@node3');
    raws.push(writer);
    let from = writer.received.length;
    writer.send('R', 'CU', name, 1, '{"n":1}', '{"writeSuccess":true}');
    await writer.waitForMessage(['R', 'WA', name, '[1]', 'L'], 3000, from);
    let stop = false;
    let written = 1;
    const writing = (async () => {
      while (!stop) {
        const v = written + 1;
        const f = writer.received.length;
        writer.send('R', 'U', name, v, JSON.stringify({ n: v }), '{"writeSuccess":true}');
        await writer.waitForMessage(['R', 'WA', name, `[${v}]`, 'L'], 3000, f);
        written = v;
      }
    })();

    const joiners = [
      [n1, 'tcp'],
      [n2, 'ws'],
      [n1, 'ws'],
      [n2, 'tcp'],
    ];
    const problems = [];
    let rounds = 0;
    let checkedUpdates = 0;
    const started = Date.now();
    await Promise.all(
      joiners.map(async ([node, kind]) => {
        const label = `joiner-${kind}@${node.label}`;
        const c = await rawConnect(node, kind, label);
        raws.push(c);
        while (Date.now() - started < RUN_MS) {
          const f = c.received.length;
          c.send('R', 'CR', name);
          await c.waitFor((m) => m[0] === 'R' && m[1] === 'R' && m[2] === name, 3000, f, `${label}: R|R`);
          await ds1.sleep(10 + Math.floor(Math.random() * 40));
          const u = c.received.length;
          c.send('R', 'US', name);
          await c.waitForMessage(['R', 'A', 'US', name], 3000, u);
          const round = c.received.slice(f).filter((m) => m[0] === 'R' && m[2] !== 'US' && !(m[1] === 'A' && m[2] === 'S'));
          rounds++;
          // [R|R v, R|U v+1, R|U v+2, ...]
          const texts = round.map((m) => m.join('|'));
          if (round.length === 0 || round[0][1] !== 'R') {
            problems.push(`${label}: an update before the read: ${JSON.stringify(texts.slice(0, 4))}`);
            continue;
          }
          const read = Number(round[0][3]);
          const after = round.slice(1);
          const vs = after.map((m) => Number(m[3]));
          const expected = vs.map((_, k) => read + 1 + k);
          if (after.some((m) => m[1] !== 'U') || JSON.stringify(vs) !== JSON.stringify(expected)) {
            problems.push(`${label}: read ${read}, then ${JSON.stringify(vs)}`);
          }
          for (const m of after) {
            if (m[4] !== JSON.stringify({ n: Number(m[3]) })) problems.push(`${label}: version ${m[3]} with data ${m[4]}`);
          }
          checkedUpdates += after.length;
        }
      })
    );
    stop = true;
    await writing;
    t.diagnostic(`joins: ${rounds} rounds, ${checkedUpdates} updates checked, ${written} versions written; problems: ${problems.length}`);
    assert.deepEqual(problems.slice(0, 10), [], `${problems.length} of ${rounds} joins saw a wrong sequence`);
    assert.ok(rounds >= 20, `only ${rounds} joins`);
  } finally {
    await Promise.all(raws.map((c) => c.close()));
  }
});

test('records: right after Redis lost its script cache (as after a restart), path sets (2.x, write-acked) right after R|CR of new records are accepted, and the node does not report the records missing', { timeout: 30000 }, async (t) => {
  // A node answers R|CR from Redis (the record is created there by a script) and fills its
  // cache of the record when its channel subscription is confirmed. With Redis's script cache
  // empty (a fresh or restarted Redis; SCRIPT FLUSH here) the create script needs a second
  // round trip (EVALSHA -> NOSCRIPT -> EVAL), and the cache must still not end up saying
  // "missing" for a record that exists.
  const N = 40;
  const results = [];
  const problems = [];
  const nodes = cluster.nodes();
  for (let round = 0; round < 3; round++) {
    const node = nodes[round];
    const c = await rawConnect(node, 'ws', `flushed-${round}`);
    try {
      assert.equal(await cluster.redisCommand(cluster.sharedRedis().port, 'SCRIPT', 'FLUSH'), 'OK');
      const names = Array.from({ length: N }, (_, i) => `${ds1.uid('cflush')}/${i}`);
      let from = c.received.length;
      for (const n of names) c.send('R', 'CR', n);
      for (const n of names) await c.waitForMessage(['R', 'R', n, '0', '{}'], 3000, from);
      from = c.received.length;
      for (const n of names) c.send('R', 'P', n, 1, 'a', 'N1', '{"writeSuccess":true}');
      for (const n of names) c.send('R', 'SN', n);
      for (const n of names) await c.waitFor((m) => m[0] === 'R' && ((m[1] === 'R' && m[2] === n) || (m[1] === 'E' && m[2] === 'SN' && m[3] === n)), 3000, from, `the snapshot of ${n}`);
      const got = c.texts(from);
      const refused = got.filter((x) => x.startsWith('R|E|RECORD_UPDATE_ERROR|')).length;
      const missing = got.filter((x) => x.startsWith('R|E|SN|')).map((x) => x.split('|')[3]);
      const acked = got.filter((x) => x.startsWith('R|WA|')).length;
      let line = `${node.label}: ${acked} acked, ${refused} refused (RECORD_UPDATE_ERROR), ${missing.length} snapshots RECORD_NOT_FOUND, of ${N}`;
      for (const n of names) {
        if (!got.includes(`R|WA|${n}|[1]|L`)) problems.push(`${node.label} ${n}: ${JSON.stringify(got.filter((x) => x.includes(n) || x.startsWith('R|E|RECORD_UPDATE_ERROR')).slice(0, 3))}`);
      }
      if (missing.length > 0) {
        // Redis has them: another node reads one
        const other = await rawConnect(nodes[(round + 1) % 3], 'ws', 'other');
        const f = other.received.length;
        other.send('R', 'SN', missing[0]);
        const r = await other.waitFor((m) => m[2] === missing[0], 3000, f);
        line += `; ${nodes[(round + 1) % 3].label} reads ${missing[0]} as ${r.join('|')}`;
        await other.close();
      }
      results.push(line);
    } finally {
      await c.close();
    }
  }
  t.diagnostic(results.join('; '));
  assert.deepEqual(problems.slice(0, 5), [], `${problems.length} path sets right after R|CR were not acknowledged`);
});
