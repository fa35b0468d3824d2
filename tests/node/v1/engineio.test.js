'use strict';
// deepstream.io-client-js 1.1.1 over engine.io, the way a browser uses it (PROTOCOL.md §2.2):
// the node client is built with utils.isNode = false, so it opens engine.io-client 1.8.6
// (polling, then the upgrade to a WebSocket) on the HTTP port instead of raw TCP.
// Runs against whatever scripts/node-tests.sh started (real deepstream 1.1.1 or corestream).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds');
const { eventsBothWays, recordPair } = require('../lib/ops');

const HTTP = () => process.env.DS_OPEN_HTTP_URL;
const TCP = () => process.env.DS_OPEN_URL;

/** A client built as in a browser: engine.io, with optional engine.io options. */
function browserClient(label, options) {
  const client = ds.browserClient(HTTP(), options);
  client.label = label;
  client.on('error', () => {});
  return client;
}

async function login(client, username) {
  const args = await ds.login(client, { username });
  assert.equal(args[0], true, `${client.label}: login failed ${JSON.stringify(args)}`);
  return client;
}

function transportOf(client) {
  const socket = client._connection._endpoint;
  return socket && socket.transport && socket.transport.name;
}

for (const [variant, options] of [
  ['polling then websocket', undefined],
  ['polling only', { transports: ['polling'] }],
]) {
  test(`engine.io (${variant}): login, events both ways with a TCP client, records`, { timeout: 20000 }, async () => {
    const name = ds.uid('eio');
    const clients = [];
    try {
      const browser = await login(browserClient('eio-browser', options), ds.uid('browser'));
      clients.push(browser);
      const tcp = await ds.open(TCP(), { username: ds.uid('tcp') }, 'tcp');
      clients.push(tcp);
      assert.ok(['polling', 'websocket'].includes(transportOf(browser)), `transport ${transportOf(browser)}`);

      // events: browser -> tcp and tcp -> browser
      const payloads = [{ a: 1, b: [true, null] }, 'héllo ünïcode ✓', 42.5, false, null, ['x', 1]];
      const { atA: atTcp, atB: atBrowser } = await eventsBothWays(tcp, browser, name, payloads, 5000);
      assert.deepEqual(atTcp, payloads);
      assert.deepEqual(atBrowser, payloads);

      // records: the browser writes, the TCP client sees it
      const { written, seen } = await recordPair(browser, tcp, `${name}/rec`);
      const changes = [];
      seen.subscribe('price', (value) => changes.push(value));
      written.set({ price: 1, label: 'ünïcode' });
      written.set('price', 2);
      await ds.waitFor(() => changes.includes(2), 5000, 'the record change');
      assert.deepEqual(seen.get(), { price: 2, label: 'ünïcode' });

      if (!options) {
        // the default client upgrades to a WebSocket
        await ds.waitFor(() => transportOf(browser) === 'websocket', 5000, 'the websocket upgrade');
      } else {
        assert.equal(transportOf(browser), 'polling');
      }
    } finally {
      await ds.closeAll(clients);
    }
  });
}

test('engine.io: many browser clients (sessions on every core) exchange events', { timeout: 30000 }, async () => {
  const name = ds.uid('eio-many');
  const clients = [];
  try {
    for (let index = 0; index < 8; index++) {
      clients.push(await login(browserClient(`eio-${index}`), ds.uid(`b${index}`)));
    }
    const received = clients.map(() => []);
    const synced = clients.map(() => false);
    clients.forEach((client, index) =>
      client.event.subscribe(name, (data) => (data === 'sync' ? (synced[index] = true) : received[index].push(data)))
    );
    const deadline = Date.now() + 8000;
    while (!synced.slice(1).every(Boolean)) {
      if (Date.now() > deadline) throw new Error('timed out waiting for every subscription');
      clients[0].event.emit(name, 'sync');
      await ds.sleep(10);
    }
    for (let index = 0; index < 8; index++) {
      clients[index].event.emit(name, `from-${index}`);
    }
    // The 1.x library also calls its own subscribers locally on emit (PROTOCOL.md §7), so
    // each client sees all 8 events: its own from the library, 7 from the server.
    await ds.waitFor(() => received.every((list) => list.length === 8), 8000, 'every event');
    const expected = [...Array(8).keys()].map((i) => `from-${i}`).sort();
    received.forEach((list) => assert.deepEqual([...list].sort(), expected));
  } finally {
    await ds.closeAll(clients);
  }
});
