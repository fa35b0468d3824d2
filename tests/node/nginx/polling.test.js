'use strict';
// deepstream.io-client-js 1.1.1 as in a browser, engine.io long-polling ONLY, through nginx
// (nginx/corestream-http.conf) in front of two corestream nodes that share nothing: every poll
// and post of a session must reach the node that answered its handshake.
//   - two clients from one address: login, 100 event round trips (200 events, each one a post
//     and a long poll), records; no errors, no reconnection, both sessions on one node (asked
//     with a noop posted to each node directly) and /metrics of the nodes agree;
//   - clients from addresses that hash to each of the two nodes: both nodes serve sessions at
//     once, each session stays on its node.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds');
const px = require('../lib/proxy');
const { recordPair } = require('../lib/ops');

// a failed test must not leave engine.io clients reconnecting (the file would never exit)
test.after(() => px.closeLeftovers());

const NGINX = () => px.env('NGINX_HTTP_URL');
const POLLING = { transports: ['polling'] };

async function login(client, username) {
  const args = await ds.login(client, { username }, 5000);
  assert.equal(args[0], true, `${client.label}: login failed ${JSON.stringify(args)}`);
  return client;
}

/**
 * n round trips: a emits ping i, b answers pong i; a waits for each pong before the next ping.
 * -> what each side received, in order
 */
async function pingPong(a, b, name, n) {
  const atB = [];
  const atA = [];
  const synced = { a: false, b: false };
  b.event.subscribe(`${name}/ping`, (i) => {
    if (i === 'sync') return (synced.b = true);
    atB.push(i);
    b.event.emit(`${name}/pong`, i);
  });
  a.event.subscribe(`${name}/pong`, (i) => (i === 'sync' ? (synced.a = true) : atA.push(i)));
  // the subscriptions are in place on the server once an emit on each gets through
  const deadline = Date.now() + 8000;
  while (!(synced.a && synced.b)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for both subscriptions of ${name}`);
    if (!synced.b) a.event.emit(`${name}/ping`, 'sync');
    if (!synced.a) b.event.emit(`${name}/pong`, 'sync');
    await ds.sleep(50);
  }
  for (let i = 0; i < n; i++) {
    a.event.emit(`${name}/ping`, i);
    await ds.waitFor(() => atA.includes(i), 5000, `pong ${i} of ${name}`);
  }
  return { atA, atB };
}

test('long-polling through nginx: 2 clients, 100 round trips, records; sessions stay on one node', { timeout: 40000 }, async (t) => {
  const name = ds.uid('poll');
  const clients = [];
  try {
    const before = await px.engineioTotals();
    const a = px.browserClient(NGINX(), 'a', POLLING);
    clients.push(a);
    await login(a, ds.uid('a'));
    const b = px.browserClient(NGINX(), 'b', POLLING);
    clients.push(b);
    await login(b, ds.uid('b'));
    const ids = [px.eioSocket(a).id, px.eioSocket(b).id];
    assert.ok(ids[0] && ids[1], `engine.io ids: ${ids}`);

    const started = Date.now();
    const { atA, atB } = await pingPong(a, b, name, 100);
    t.diagnostic(`100 round trips over long-polling through nginx: ${Date.now() - started} ms`);
    const expected = [...Array(100).keys()];
    assert.deepEqual(atB, expected);
    assert.deepEqual(atA, expected);

    // records: a writes, b sees every change
    const { written, seen } = await recordPair(a, b, `${name}/rec`);
    const changes = [];
    seen.subscribe('n', (value) => changes.push(value));
    for (let i = 1; i <= 20; i++) written.set({ n: i, label: 'ünïcode ✓' });
    await ds.waitFor(() => changes.includes(20), 5000, 'the last record change');
    assert.deepEqual(seen.get(), { n: 20, label: 'ünïcode ✓' });

    // still the same sessions, on polling, and nothing went wrong
    assert.deepEqual([px.eioSocket(a).id, px.eioSocket(b).id], ids, 'an engine.io session was replaced');
    assert.equal(px.eioSocket(a).transport, 'polling');
    assert.equal(px.eioSocket(b).transport, 'polling');
    for (const c of clients) {
      assert.deepEqual(c.errors, [], `${c.label} had errors`);
      assert.deepEqual(c.states.filter((s) => s === 'RECONNECTING' || s === 'ERROR'), [], `${c.label}: ${c.states}`);
    }

    // both sessions on the same node, which /metrics confirms
    await ds.sleep(100); // let the clients' last posts finish
    const homes = [await px.nodesWithSession(ids[0]), await px.nodesWithSession(ids[1])];
    assert.equal(homes[0].length, 1, `session ${ids[0]} known to nodes ${homes[0]}`);
    assert.deepEqual(homes[1], homes[0], 'the two clients of one address are on different nodes');
    const after = await px.engineioTotals();
    const delta = after.map((v, i) => v - before[i]);
    t.diagnostic(`engine.io sessions opened per node: ${delta}`);
    const home = homes[0][0];
    assert.equal(delta[home], 2);
    assert.equal(delta[1 - home], 0);
  } finally {
    await ds.closeAll(clients);
  }
});

test('long-polling through nginx: clients from several addresses, sessions on both nodes, each stays on its node', { timeout: 40000 }, async (t) => {
  const nginx = NGINX();
  // find source addresses that nginx sends to node 0 and to node 1 (the hash of the address)
  const byNode = [null, null];
  const tried = [];
  for (let i = 10; i < 60 && !(byNode[0] && byNode[1]); i++) {
    const localAddress = `127.0.0.${i}`;
    const h = await px.eioHandshake(nginx, { localAddress });
    assert.equal(h.status, 200, h.body);
    const homes = await px.nodesWithSession(h.sid);
    assert.equal(homes.length, 1, `handshake from ${localAddress}: session known to nodes ${homes}`);
    tried.push(`${localAddress}->${homes[0]}`);
    if (!byNode[homes[0]]) byNode[homes[0]] = localAddress;
    await px.eioPost(px.nodesHttp()[homes[0]], h.sid, '1'); // close the probe session
  }
  t.diagnostic(`address -> node: ${tried.join(' ')}`);
  assert.ok(byNode[0] && byNode[1], `no address found for each node: ${tried.join(' ')}`);

  const name = ds.uid('poll-many');
  const clients = [];
  try {
    // two clients per address; a pair talks over its node
    const pairs = [];
    for (const [node, localAddress] of byNode.entries()) {
      const eio = { agent: px.agentFrom(localAddress), localAddress };
      const a = px.browserClient(nginx, `n${node}-a`, POLLING, eio);
      clients.push(a);
      await login(a, ds.uid('a'));
      const b = px.browserClient(nginx, `n${node}-b`, POLLING, eio);
      clients.push(b);
      await login(b, ds.uid('b'));
      pairs.push({ node, a, b });
    }
    // both pairs at the same time: both nodes serve long polls at once
    const results = await Promise.all(pairs.map((p) => pingPong(p.a, p.b, `${name}-${p.node}`, 30)));
    for (const r of results) {
      assert.deepEqual(r.atB, [...Array(30).keys()]);
      assert.deepEqual(r.atA, [...Array(30).keys()]);
    }
    await ds.sleep(100);
    for (const p of pairs) {
      for (const c of [p.a, p.b]) {
        const { id, transport } = px.eioSocket(c);
        assert.equal(transport, 'polling');
        assert.deepEqual(await px.nodesWithSession(id), [p.node], `${c.label}: session ${id} not on node ${p.node} alone`);
        assert.deepEqual(c.errors, [], `${c.label} had errors`);
      }
    }
  } finally {
    await ds.closeAll(clients);
  }
});
