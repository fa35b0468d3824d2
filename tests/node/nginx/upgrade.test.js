'use strict';
// deepstream.io-client-js 1.1.1 as in a browser, engine.io polling then the upgrade to a
// WebSocket, through nginx (Upgrade/Connection forwarded by nginx/corestream-http.conf). The
// upgrade request carries the session's sid and must reach the node of the session: it does
// when nginx keeps the client's address on one node.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds');
const px = require('../lib/proxy');
const { eventsBothWays, recordPair } = require('../lib/ops');

// a failed test must not leave engine.io clients reconnecting (the file would never exit)
test.after(() => px.closeLeftovers());

const NGINX = () => px.env('NGINX_HTTP_URL');

async function login(client, username) {
  const args = await ds.login(client, { username }, 5000);
  assert.equal(args[0], true, `${client.label}: login failed ${JSON.stringify(args)}`);
  return client;
}

test('polling -> WebSocket upgrade through nginx: login, events both ways, records', { timeout: 20000 }, async () => {
  const name = ds.uid('upg');
  const clients = [];
  try {
    const before = await px.engineioTotals();
    const a = px.browserClient(NGINX(), 'a');
    clients.push(a);
    await login(a, ds.uid('a'));
    const b = px.browserClient(NGINX(), 'b');
    clients.push(b);
    await login(b, ds.uid('b'));
    const ids = [px.eioSocket(a).id, px.eioSocket(b).id];
    await ds.waitFor(() => px.eioSocket(a).transport === 'websocket' && px.eioSocket(b).transport === 'websocket', 5000, 'both upgrades');

    // events over the upgraded connections, both ways
    const payloads = [];
    for (let i = 0; i < 100; i++) payloads.push({ i, text: 'héllo ✓', list: [i, null, true] });
    const { atA, atB } = await eventsBothWays(a, b, name, payloads, 5000);
    assert.deepEqual(atA, payloads);
    assert.deepEqual(atB, payloads);

    // records
    const { written, seen } = await recordPair(a, b, `${name}/rec`);
    const changes = [];
    seen.subscribe('price', (v) => changes.push(v));
    written.set({ price: 1, currency: '€' });
    written.set('price', 2);
    await ds.waitFor(() => changes.includes(2), 5000, 'the record change');
    assert.deepEqual(seen.get(), { price: 2, currency: '€' });

    assert.deepEqual([px.eioSocket(a).id, px.eioSocket(b).id], ids, 'an engine.io session was replaced');
    for (const c of clients) {
      assert.equal(px.eioSocket(c).transport, 'websocket');
      assert.deepEqual(c.errors, [], `${c.label} had errors`);
      assert.deepEqual(c.states.filter((s) => s === 'RECONNECTING' || s === 'ERROR'), [], `${c.label}: ${c.states}`);
    }
    // both sessions were opened on one node (the one the address hashes to)
    const delta = (await px.engineioTotals()).map((v, i) => v - before[i]);
    assert.deepEqual(delta.slice().sort(), [0, 2], `engine.io sessions opened per node: ${delta}`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('WebSocket-only engine.io through nginx (no polling first)', { timeout: 15000 }, async () => {
  const name = ds.uid('eio-ws');
  const clients = [];
  try {
    const a = px.browserClient(NGINX(), 'a', { transports: ['websocket'] });
    clients.push(a);
    await login(a, ds.uid('a'));
    const b = px.browserClient(NGINX(), 'b', { transports: ['websocket'] });
    clients.push(b);
    await login(b, ds.uid('b'));
    assert.equal(px.eioSocket(a).transport, 'websocket');
    const got = [];
    b.event.subscribe(name, (d) => got.push(d));
    const deadline = Date.now() + 5000;
    while (got.length === 0) {
      assert.ok(Date.now() < deadline, 'no event arrived');
      a.event.emit(name, 'x');
      await ds.sleep(50);
    }
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
  } finally {
    await ds.closeAll(clients);
  }
});
