'use strict';
// deepstream.io-client-js 2.3.4 over a plain WebSocket (ws://nginx/deepstream) through nginx:
// login, events, records, a burst of messages; /health-check and /metrics passed through.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds2');
const px = require('../lib/proxy');
const { eventsBothWays, recordPair } = require('../lib/ops');

const NGINX = () => px.env('NGINX_HTTP_URL');

const metricTotals = (key) => Promise.all(px.nodesHttp().map(async (n) => (await px.metrics(n)).get(key)));

test('2.3.4 client through nginx: login, events both ways, records, 500-event burst', { timeout: 20000 }, async () => {
  const name = ds.uid('v2');
  const clients = [];
  try {
    const before = await metricTotals('corestream_connections_total{transport="websocket"}');
    const a = await ds.open(NGINX(), { username: ds.uid('a') }, 'a');
    clients.push(a);
    const b = await ds.open(NGINX(), { username: ds.uid('b') }, 'b');
    clients.push(b);
    assert.deepEqual(ds.wireTexts(a).slice(0, 3), ['C|CH', 'C|A', 'A|A']);

    const payloads = [];
    for (let i = 0; i < 500; i++) payloads.push({ i, s: 'ünïcode ✓' });
    const { atA, atB } = await eventsBothWays(a, b, name, payloads, 8000);
    assert.deepEqual(atA, payloads);
    assert.deepEqual(atB, payloads);

    // records: set with a write ack, seen by the other client
    const { written, seen } = await recordPair(a, b, `${name}/rec`);
    const changes = [];
    seen.subscribe('n', (v) => changes.push(v));
    const ack = await ds.withTimeout(new Promise((resolve) => written.set({ n: 1, tag: 'x' }, (err) => resolve(err))), 3000, 'the write ack');
    assert.equal(ack, null);
    written.set('n', 2);
    await ds.waitFor(() => changes.includes(2), 5000, 'the record change');
    assert.deepEqual(seen.get(), { n: 2, tag: 'x' });

    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    const delta = (await metricTotals('corestream_connections_total{transport="websocket"}')).map((v, i) => v - before[i]);
    assert.deepEqual(delta.slice().sort(), [0, 2], `WebSocket connections opened per node: ${delta}`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('/health-check and /metrics through nginx', { timeout: 10000 }, async () => {
  const health = await px.request(NGINX(), { path: '/health-check' });
  assert.equal(health.status, 200);
  const metrics = await px.request(NGINX(), { path: '/metrics' });
  assert.equal(metrics.status, 200);
  assert.match(metrics.body, /^corestream_cores 2$/m);
});
