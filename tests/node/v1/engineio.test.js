'use strict';
// deepstream.io-client-js 1.1.1 over engine.io, the way a browser uses it (PROTOCOL.md §2.2):
// the node client is built with utils.isNode = false, so it opens engine.io-client 1.8.6
// (polling, then the upgrade to a WebSocket) on the HTTP port instead of raw TCP.
// Runs against whatever scripts/node-tests.sh started (real deepstream 1.1.1 or corestream).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const deepstream = require('deepstream.io-client-js');
const utils = require('deepstream.io-client-js/src/utils/utils');
const ds = require('../lib/ds');

const HTTP = () => process.env.DS_OPEN_HTTP_URL;
const TCP = () => process.env.DS_OPEN_URL;

/** A client built as in a browser: engine.io, with optional engine.io options. */
function browserClient(label, options) {
  const saved = utils.isNode;
  utils.isNode = false;
  try {
    const client = deepstream(HTTP(), options || {});
    client.label = label;
    client.on('error', () => {});
    return client;
  } finally {
    utils.isNode = saved;
  }
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

function waitFor(predicate, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const timer = setInterval(() => {
      if (predicate()) {
        clearInterval(timer);
        resolve();
      } else if (Date.now() - started > timeoutMs) {
        clearInterval(timer);
        reject(new Error(`timed out waiting for ${what}`));
      }
    }, 10);
  });
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
      const atTcp = [];
      const atBrowser = [];
      // Barrier emits ({sync: true}) may still arrive after the barrier: they are not counted.
      const isSync = (data) => data !== null && typeof data === 'object' && data.sync === true;
      let synced = false;
      tcp.event.subscribe(`${name}/to-tcp`, (data) => (isSync(data) ? (synced = synced || true) : atTcp.push(data)));
      browser.event.subscribe(`${name}/to-browser`, (data) => (isSync(data) ? null : atBrowser.push(data)));
      const syncSeen = { tcp: false, browser: false };
      tcp.event.subscribe(`${name}/to-tcp`, (data) => isSync(data) && (syncSeen.tcp = true));
      browser.event.subscribe(`${name}/to-browser`, (data) => isSync(data) && (syncSeen.browser = true));
      // subscriptions are acknowledged before emits count; retry emits until the first arrives
      await waitFor(() => {
        browser.event.emit(`${name}/to-tcp`, { sync: true });
        tcp.event.emit(`${name}/to-browser`, { sync: true });
        return syncSeen.tcp && syncSeen.browser;
      }, 5000, 'both subscriptions');
      const payloads = [{ a: 1, b: [true, null] }, 'héllo ünïcode ✓', 42.5, false, null, ['x', 1]];
      for (const payload of payloads) {
        browser.event.emit(`${name}/to-tcp`, payload);
        tcp.event.emit(`${name}/to-browser`, payload);
      }
      await waitFor(() => atTcp.length === payloads.length && atBrowser.length === payloads.length, 5000, 'all events');
      assert.deepEqual(atTcp, payloads);
      assert.deepEqual(atBrowser, payloads);

      // records: the browser writes, the TCP client sees it
      const written = browser.record.getRecord(`${name}/rec`);
      await new Promise((resolve) => written.whenReady(resolve));
      const seen = tcp.record.getRecord(`${name}/rec`);
      await new Promise((resolve) => seen.whenReady(resolve));
      const changes = [];
      seen.subscribe('price', (value) => changes.push(value));
      written.set({ price: 1, label: 'ünïcode' });
      written.set('price', 2);
      await waitFor(() => changes.includes(2), 5000, 'the record change');
      assert.deepEqual(seen.get(), { price: 2, label: 'ünïcode' });

      if (!options) {
        // the default client upgrades to a WebSocket
        await waitFor(() => transportOf(browser) === 'websocket', 5000, 'the websocket upgrade');
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
    await waitFor(() => {
      clients[0].event.emit(name, 'sync');
      return synced.slice(1).every(Boolean);
    }, 8000, 'every subscription');
    for (let index = 0; index < 8; index++) {
      clients[index].event.emit(name, `from-${index}`);
    }
    // The 1.x library also calls its own subscribers locally on emit (PROTOCOL.md §7), so
    // each client sees all 8 events: its own from the library, 7 from the server.
    await waitFor(() => received.every((list) => list.length === 8), 8000, 'every event');
    const expected = [...Array(8).keys()].map((i) => `from-${i}`).sort();
    received.forEach((list) => assert.deepEqual([...list].sort(), expected));
  } finally {
    await ds.closeAll(clients);
  }
});
