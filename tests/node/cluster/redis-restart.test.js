'use strict';
// Redis dies (SIGKILL) and comes back on the same port with the same folder (AOF, fsync on
// every write) in the middle of the run. This file starts its own redis-server and three nodes
// (tests/node/lib/cluster.js), so the shared cluster is not touched. The tests below run in
// order and share one story: before the kill / while Redis is down / after the restart.
// Config as scripts/cluster-tests.sh: clusterNodeInactiveTimeout 1500 (the outage is longer).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const ds1 = require('../lib/ds');
const ds2 = require('../lib/ds2');
const raw = require('../lib/raw');
const rawws = require('../lib/raw-ws');
const cluster = require('../lib/cluster');
const ops = require('../lib/ops');

const { libOf, ready, evtTexts, barrier, isPresenceAckTimeout } = ops;
const make = (client, name, data, timeoutMs = 6000) => ops.make(client, name, data, timeoutMs);

const prefix = ds1.uid('credis');
const LOCAL = (i) => `${prefix}/local${i}`;
const ALL = `${prefix}/all`;
const RPC = `${prefix}/rpc`;
const PROVIDER_USER = `${prefix}-provider`;
const RECORDS = [0, 1, 2, 3].map((k) => `${prefix}/rec${k}`);
const LATE = `${prefix}/late`;
const LISTEN_PATTERN = `${prefix}/listen/.*`;

const s = {
  redis: null,
  nodes: [],
  clients: [],
  pairs: [], // per node: {a: 1.1.1, b: 2.3.4, gotA: {name: []}, gotB: {...}}
  writes: [], // {record, path, value, version, err, ackedAt}
  killedAt: 0,
  restartedAt: 0,
};

/** values (callback) a client got for an event name */
function got(pair, who, name) {
  const m = pair[who === 'a' ? 'gotA' : 'gotB'];
  if (!m[name]) m[name] = [];
  return m[name];
}

async function open(lib, url, username, label) {
  const c = await lib.open(url, { username }, label);
  s.clients.push(c);
  return c;
}

before(async () => {
  s.redis = await cluster.startRedis('restart-redis');
  s.nodes = await Promise.all([1, 2, 3].map((i) => cluster.startNode(s.redis.port, `restart-node${i}`)));
  // every node stamped its first heartbeat
  await cluster.waitRedis(s.redis.port, ['HLEN', 'cs:nodes'], (n) => n === 3, 5000, 'three nodes in cs:nodes');

  for (const [i, node] of s.nodes.entries()) {
    const a = await open(ds1, node.tcp, `${prefix}-a${i + 1}`, `a-v1@node${i + 1}`);
    const b = await open(ds2, node.http, `${prefix}-b${i + 1}`, `b-v2@node${i + 1}`);
    const pair = { a, b, gotA: {}, gotB: {} };
    for (const [who, c] of [
      ['a', a],
      ['b', b],
    ]) {
      const mark = c.wire.length;
      c.event.subscribe(LOCAL(i), (v) => got(pair, who, LOCAL(i)).push(v));
      await libOf(c).waitWire(c, `E|A|S|${LOCAL(i)}`, 3000, mark);
    }
    const mark = a.wire.length;
    a.event.subscribe(ALL, (v) => got(pair, 'a', ALL).push(v));
    await ds1.waitWire(a, `E|A|S|${ALL}`, 3000, mark);
    s.pairs.push(pair);
  }

  // a listener on node 1, registered before the outage (offered nothing yet)
  s.listenCalls = [];
  s.listener = s.pairs[0].a;
  s.listener.event.listen(LISTEN_PATTERN, (match, isSubscribed, response) => {
    s.listenCalls.push([match, isSubscribed]);
    if (isSubscribed) response.accept();
  });
  await ds1.waitWire(s.listener, `E|A|L|${LISTEN_PATTERN}`);

  // an RPC provider on node 2 (its user is logged in there), a watcher on node 1
  s.provider = await open(ds2, s.nodes[1].http, PROVIDER_USER, 'provider-v2@node2');
  const p0 = s.provider.wire.length;
  s.provider.rpc.provide(RPC, (data, response) => response.send(`ok-${data}`));
  await ds2.waitWire(s.provider, `P|A|S|${RPC}`, 3000, p0);
  await cluster.waitRedis(s.redis.port, ['SCARD', `cs:rpc:${RPC}`], (n) => n === 1, 5000, 'the provider registered');
  s.watcher = await open(ds2, s.nodes[0].http, `${prefix}-watcher`, 'watcher-v2@node1');
  // Node 1 hears of the provider's login through Redis, in its own time: subscribe only once
  // node 1 lists it, so a PNJ the watcher gets later is one the outage caused.
  await ops.getAllIncluding(s.watcher, PROVIDER_USER, 5000);
  s.presence = [];
  s.watcher.presence.subscribe((username, loggedIn) => {
    if (username === PROVIDER_USER) s.presence.push([loggedIn, Date.now()]);
  });
  await ds2.waitWire(s.watcher, 'U|A|S|U');

  // The records exist before the writer subscribes: created by a raw upsert on node 3. (A path
  // set right after R|CR created a record on a fresh Redis can be refused: records.test.js
  // checks that separately; this file is about the outage.)
  const creator = await rawws.connect(s.nodes[2].http, { auth: { username: `${prefix}-creator` }, label: 'creator@node3' });
  for (const name of RECORDS.concat([`${prefix}/outage`])) {
    const from = creator.received.length;
    creator.send('R', 'CU', name, 1, '{"created":true}', '{"writeSuccess":true}');
    await creator.waitForMessage(['R', 'WA', name, '[1]', 'L'], 3000, from);
  }
  await creator.close();

  // the writer (2.3.4, node 1) holds the records; a 2.3.4 client on node 3 holds one for the outage
  s.writer = await open(ds2, s.nodes[0].http, `${prefix}-writer`, 'writer-v2@node1');
  s.recs = await Promise.all(RECORDS.map((name) => ready(s.writer.record.getRecord(name), s.writer.label)));
  s.outageWriter = await open(ds2, s.nodes[2].http, `${prefix}-outage`, 'outage-writer-v2@node3');
  s.outageRec = await ready(s.outageWriter.record.getRecord(`${prefix}/outage`), s.outageWriter.label);
});

after(async () => {
  await ops.closeClients(s.clients, 500);
  await Promise.all(s.nodes.map((n) => n.kill('SIGKILL')));
  if (s.redis) await s.redis.kill('SIGKILL');
});

test('before the kill: cross-node events and RPC work; write-acked path sets run right up to the SIGKILL of Redis', { timeout: 20000 }, async (t) => {
  const [p1, p2, p3] = s.pairs;
  await barrier((v) => p1.b.event.emit(ALL, v), { round: 'before' }, [got(p1, 'a', ALL), got(p2, 'a', ALL), got(p3, 'a', ALL)], 'cross-node events before the kill', 5000, 50);
  assert.deepEqual((await make(p1.a, RPC, 'before')).args, [null, 'ok-before']);

  // quick write-acked path sets on four records; Redis is killed while they are in flight
  let stop = false;
  let i = 0;
  const writing = (async () => {
    while (!stop) {
      const k = i % RECORDS.length;
      const rec = s.recs[k];
      const w = { record: RECORDS[k], path: `f${i}`, value: i, version: null, err: undefined, ackedAt: null };
      rec.set(w.path, w.value, (err) => {
        w.err = err;
        w.ackedAt = Date.now();
      });
      w.version = rec.version;
      s.writes.push(w);
      i++;
      if (i % 4 === 0) await ds1.sleep(2);
    }
  })();
  await ds1.sleep(300);
  s.killedAt = Date.now();
  await s.redis.kill('SIGKILL');
  await ds1.sleep(150);
  stop = true;
  await writing;
  await ds1.sleep(300); // let the error replies of the writes in flight arrive
  const acked = s.writes.filter((w) => w.err === null);
  const ackedAfterKill = acked.filter((w) => w.ackedAt >= s.killedAt).length;
  const failed = s.writes.filter((w) => w.err !== undefined && w.err !== null);
  const unanswered = s.writes.filter((w) => w.err === undefined);
  t.diagnostic(
    `writes: ${s.writes.length} sent, ${acked.length} acknowledged (${ackedAfterKill} of them after the kill signal), ${failed.length} called back with an error, ${unanswered.length} never called back; writer errors: ${JSON.stringify(s.writer.errors.slice(0, 3))}${s.writer.errors.length > 3 ? ` (+${s.writer.errors.length - 3})` : ''}`
  );
  assert.ok(acked.length >= 20, `only ${acked.length} writes were acknowledged before the kill`);
  assert.ok(unanswered.length + failed.length > 0, 'no write was in flight at the kill');
});

test('while Redis is down: every node keeps serving its own clients (events between a 1.1.1 and a 2.3.4 client on the same node, an RPC with a provider on the same node); /health-check answers', { timeout: 20000 }, async (t) => {
  // every node noticed (its command links are down)
  await cluster.eventually(
    async () => {
      for (const n of s.nodes) if ((await cluster.metric(n.http, 'corestream_redis_links_up{link="command"}')) !== 0) return false;
      return true;
    },
    5000,
    'every node to notice that Redis is gone'
  );
  for (const [i, pair] of s.pairs.entries()) {
    const name = LOCAL(i);
    const marks = { a: pair.a.wire.length, b: pair.b.wire.length, ga: got(pair, 'a', name).length, gb: got(pair, 'b', name).length };
    pair.a.event.emit(name, { from: 'v1', n: i });
    pair.b.event.emit(name, `from-v2-${i}`);
    await ds2.waitFor(
      () => got(pair, 'a', name).length > marks.ga + 1 && got(pair, 'b', name).length > marks.gb + 1,
      3000,
      () => `node ${i + 1}: the local events while Redis is down (a: ${JSON.stringify(got(pair, 'a', name).slice(marks.ga))}, b: ${JSON.stringify(got(pair, 'b', name).slice(marks.gb))})`
    );
    await ds1.sleep(100);
    // each library calls its own callback locally; the other one gets it over the wire, once
    assert.deepEqual(evtTexts(pair.b, name, marks.b), [`E|EVT|${name}|O{"from":"v1","n":${i}}`], `node ${i + 1}: 2.3.4 client`);
    assert.deepEqual(evtTexts(pair.a, name, marks.a), [`E|EVT|${name}|Sfrom-v2-${i}`], `node ${i + 1}: 1.1.1 client`);
    const health = await cluster.httpGet(s.nodes[i].http, '/health-check');
    assert.equal(health.status, 200, `node ${i + 1} /health-check: ${health.status} ${health.body}`);
    t.diagnostic(`node ${i + 1} /health-check while Redis is down: ${health.status} ${JSON.stringify(health.body.trim())}`);
  }
  // a provider and a requester on node 2: served locally
  const res = await make(s.pairs[1].b, RPC, 'down');
  assert.deepEqual(res.args, [null, 'ok-down'], `a local RPC on node 2 while Redis is down: ${JSON.stringify(res.args)}`);
});

test("while Redis is down: a 2.3.4 set(path, value, cb) is not acknowledged as written, and its callback gets an error (deepstream 2.4.1 sends R|WA with the error when its cache/storage write fails)", { timeout: 15000 }, async (t) => {
  const c = s.outageWriter;
  const w0 = c.wire.length;
  let cbArgs = null;
  s.outageRec.set('x', 1, (...args) => {
    cbArgs = args;
  });
  await ds2.waitFor(() => c.wire.slice(w0).some((m) => m[0] === 'R'), 3000, 'a reply to the write');
  await ds2.waitFor(() => cbArgs !== null, 3000, () => `the write callback (never called; the node replied ${JSON.stringify(ds2.wireTexts(c, w0))}, client errors ${JSON.stringify(c.errors)})`).catch((e) => {
    t.diagnostic(String(e.message));
  });
  const replies = ds2.wireTexts(c, w0).filter((x) => x.startsWith('R|'));
  t.diagnostic(`reply: ${JSON.stringify(replies)}; callback: ${JSON.stringify(cbArgs)}`);
  assert.ok(!replies.some((x) => /^R\|WA\|.*\|L$/.test(x)), `the write was acknowledged without an error: ${JSON.stringify(replies)}`);
  assert.ok(cbArgs !== null, `the write callback was never called (the node replied ${JSON.stringify(replies)})`);
  assert.ok(cbArgs[0] !== null && cbArgs[0] !== undefined, `the write callback was called without an error: ${JSON.stringify(cbArgs)}`);
});

test('after the restart (same port, same folder): cross-node events flow again; every acknowledged write is there, read on other nodes', { timeout: 30000 }, async (t) => {
  await s.redis.restart();
  s.restartedAt = Date.now();
  const [p1, p2, p3] = s.pairs;
  // poll with barrier values until node 1's emits reach nodes 1, 2 and 3 again
  await barrier((v) => p1.b.event.emit(ALL, v), { round: 'after' }, [got(p1, 'a', ALL), got(p2, 'a', ALL), got(p3, 'a', ALL)], 'cross-node events after the restart', 10000, 50);
  t.diagnostic(`cross-node events back ${Date.now() - s.restartedAt} ms after the restart`);
  const marks = s.pairs.map((p) => p.a.wire.length);
  p1.b.event.emit(ALL, 'back');
  await ds2.waitFor(() => s.pairs.every((p) => got(p, 'a', ALL).includes('back')), 3000, 'every node to get the event after the restart');
  await ds1.sleep(150);
  s.pairs.forEach((p, i) => assert.deepEqual(evtTexts(p.a, ALL, marks[i]).filter((x) => !x.includes('__sync')), [`E|EVT|${ALL}|Sback`], `node ${i + 1}`));

  // every acknowledged write, read by fresh raw readers on nodes 2 and 3 and a fresh library client
  const acked = s.writes.filter((w) => w.err === null);
  assert.ok(acked.length > 0, 'no acknowledged writes to check (see the first test)');
  for (const [node, label] of [
    [s.nodes[1], 'node2'],
    [s.nodes[2], 'node3'],
  ]) {
    const reader = await raw.connect(node.tcp, { auth: { username: 'reader' }, label: `reader@${label}` });
    try {
      for (const name of RECORDS) {
        const from = reader.received.length;
        reader.send('R', 'SN', name);
        const snap = await reader.waitFor((m) => m[0] === 'R' && (m[2] === name || m[3] === name), 3000, from, `the snapshot of ${name}`);
        assert.equal(snap[1], 'R', `${reader.label}: ${snap.join('|')}`);
        const version = Number(snap[3]);
        const data = JSON.parse(snap[4]);
        const mine = acked.filter((w) => w.record === name);
        const lost = mine.filter((w) => data[w.path] !== w.value);
        assert.deepEqual(lost.map((w) => `${w.path}=${w.value} (v${w.version})`), [], `${reader.label}: acknowledged writes of ${name} lost after the restart`);
        const maxAcked = Math.max(0, ...mine.map((w) => w.version));
        assert.ok(version >= maxAcked, `${reader.label}: ${name} is at version ${version}, but version ${maxAcked} was acknowledged`);
      }
    } finally {
      await reader.close();
    }
  }
  const fresh = await open(ds2, s.nodes[2].http, `${prefix}-fresh`, 'fresh-v2@node3');
  for (const name of RECORDS) {
    const snap = await ds1.withTimeout(new Promise((resolve) => fresh.record.snapshot(name, (...a) => resolve(a))), 3000, `snapshot ${name}`);
    assert.equal(snap[0], null, `${fresh.label}: snapshot of ${name}: ${JSON.stringify(snap)}`);
    for (const w of acked.filter((x) => x.record === name)) assert.equal(snap[1][w.path], w.value, `${name}.${w.path}`);
  }
  t.diagnostic(`${acked.length} acknowledged writes checked on nodes 2 and 3`);
});

test('after the restart: new write-acked sets are acknowledged (a 2.3.4 client on node 2, a record created on node 3 after the restart)', { timeout: 15000 }, async () => {
  const p2 = s.pairs[1];
  const creator = await rawws.connect(s.nodes[2].http, { auth: { username: `${prefix}-creator2` }, label: 'creator2@node3' });
  try {
    const from = creator.received.length;
    creator.send('R', 'CU', LATE, 1, '{"created":true}', '{"writeSuccess":true}');
    await creator.waitForMessage(['R', 'WA', LATE, '[1]', 'L'], 3000, from);
  } finally {
    await creator.close();
  }
  const l0 = p2.b.wire.length;
  const lateRec = await ready(p2.b.record.getRecord(LATE), p2.b.label);
  let ack;
  try {
    ack = await ds1.withTimeout(new Promise((resolve) => lateRec.set('n', 1, (err) => resolve(err))), 3000, 'a write ack after the restart');
  } catch (e) {
    throw new Error(`${e.message}: ${p2.b.label} sent ${JSON.stringify(ds2.sentTexts(p2.b).filter((x) => x.includes(LATE)))}, received ${JSON.stringify(ds2.wireTexts(p2.b, l0))}`);
  }
  assert.equal(ack, null);
});

test('after the restart: the RPC provider on node 2 (which never left) is reachable from node 1 again', { timeout: 20000 }, async (t) => {
  const p1 = s.pairs[0];
  const attempts = [];
  const rpcDeadline = Date.now() + 6000;
  for (;;) {
    const res = await make(p1.a, RPC, 'after');
    attempts.push(`${Date.now() - s.restartedAt}ms:${res.args[0] === null ? res.args[1] : res.args[0]}`);
    if (res.args[0] === null || Date.now() > rpcDeadline) break;
    await ds1.sleep(200);
  }
  t.diagnostic(`RPC from node 1 (ms after the restart): ${attempts.join(' ')}`);
  t.diagnostic(`Redis: ${JSON.stringify(await cluster.dumpRedis(s.redis.port, 'cs:rpc*'))}`);
  assert.equal(attempts[attempts.length - 1].split(':')[1], 'ok-after', `the provider on node 2 stays unreachable from node 1 after the restart: ${attempts.join(' ')}`);
});

test("through the outage: the provider's user never logged out, so presence subscribers on other nodes are not told it left (and getAll lists it)", { timeout: 15000 }, async (t) => {
  const users = await ops.getAllIncluding(s.watcher, PROVIDER_USER, 5000);
  const seen = s.presence.map(([joined, at]) => `${joined ? 'PNJ' : 'PNL'}@${at - s.killedAt}ms`);
  t.diagnostic(`presence of ${PROVIDER_USER} as seen on node 1 (ms after the kill; restart at ${s.restartedAt - s.killedAt} ms): ${JSON.stringify(seen)}`);
  assert.ok(users.includes(PROVIDER_USER), `getAll on node 1 does not list ${PROVIDER_USER} (still logged in on node 2): ${JSON.stringify(users.filter((u) => u.startsWith(prefix)))}`);
  assert.deepEqual(seen, [], `the watcher was told ${PROVIDER_USER} left/joined while it stayed logged in`);
  assert.deepEqual(ds2.errorsExcept(s.watcher, isPresenceAckTimeout), []);
});

test('after the restart: listening across nodes works again: the listener on node 1 (registered before the outage) is offered a subscription made on node 3, and told SR when it goes', { timeout: 15000 }, async () => {
  const name = `${prefix}/listen/after`;
  const subscriber = s.pairs[2].b;
  const cb = () => {};
  subscriber.event.subscribe(name, cb);
  await ds1.waitFor(() => s.listenCalls.some(([m, on]) => m === name && on), 8000, () => `the listener on node 1 to be offered ${name} (calls ${JSON.stringify(s.listenCalls)})`);
  await ds1.sleep(200);
  subscriber.event.unsubscribe(name, cb);
  await ds1.waitFor(() => s.listenCalls.some(([m, on]) => m === name && !on), 5000, () => `SR for ${name} (calls ${JSON.stringify(s.listenCalls)})`);
});
