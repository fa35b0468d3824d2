'use strict';
// deepstream.io-client-js 1.1.1 over raw TCP through nginx's stream block
// (nginx/corestream-stream.conf) with `proxy_protocol on`: nginx writes a PROXY protocol v1
// header before the client's first byte, and the nodes run with `tcpProxyProtocol: true`,
// `trustedProxies: [127.0.0.2]` (nginx connects from 127.0.0.2, proxy_bind).
// The clients' tests alone do not prove the nodes read the header: the 1.x handshake looks
// only at the action of `C|CHR`, so a node that knows nothing of the PROXY protocol takes
// "PROXY TCP4 ...\r\nC" for the topic of the first message and logs the client in all the
// same. The last three tests check the nodes' side directly, with hand-written headers.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds');
const raw = require('../lib/raw');
const px = require('../lib/proxy');
const { eventsBothWays, recordPair } = require('../lib/ops');

const NGINX_TCP = () => px.env('NGINX_TCP_URL');

test('raw TCP through nginx (PROXY protocol): C|CH first, handshake and login', { timeout: 10000 }, async () => {
  const c = await raw.connect(NGINX_TCP(), { label: 'raw-tcp' });
  try {
    await c.waitForMessage('C|CH', 3000);
    assert.deepEqual(c.texts(), ['C|CH'], 'the node answered something before or instead of the challenge');
    await c.login({ username: ds.uid('raw') });
  } finally {
    await c.close();
  }
});

test('1.1.1 TCP clients through nginx: login, events both ways, records', { timeout: 15000 }, async () => {
  const name = ds.uid('tcp');
  const clients = [];
  try {
    const a = await ds.open(NGINX_TCP(), { username: ds.uid('a') }, 'a');
    clients.push(a);
    const b = await ds.open(NGINX_TCP(), { username: ds.uid('b') }, 'b');
    clients.push(b);

    const payloads = [];
    for (let i = 0; i < 300; i++) payloads.push({ i, s: 'ünïcode ✓' });
    const { atA, atB } = await eventsBothWays(a, b, name, payloads, 8000);
    assert.deepEqual(atA, payloads);
    assert.deepEqual(atB, payloads);

    const { written, seen } = await recordPair(a, b, `${name}/rec`);
    const changes = [];
    seen.subscribe('n', (v) => changes.push(v));
    written.set({ n: 1 });
    written.set('n', 2);
    await ds.waitFor(() => changes.includes(2), 5000, 'the record change');
    assert.deepEqual(seen.get(), { n: 2 });
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});

// The nodes' side of the contract (tcpProxyProtocol: true, trustedProxies: [127.0.0.2]),
// checked directly at node A's TCP port with hand-written headers.
const NODE_TCP = () => px.env('NGINX_NODES_TCP').split(',')[0];

/** connects from localAddress, writes `first`, then C|CHR; -> what came back and whether the node closed */
async function direct(localAddress, first) {
  const net = require('net');
  const { host, port } = raw.parseHostPort(NODE_TCP());
  return new Promise((resolve) => {
    let text = '';
    let closed = false;
    const socket = net.createConnection({ host, port, localAddress });
    socket.setEncoding('utf8');
    socket.on('data', (d) => (text += d));
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
    });
    socket.on('connect', () => {
      socket.write(first + raw.encode(['C', 'CHR', `${host}:${port}`]));
    });
    setTimeout(() => {
      socket.destroy();
      resolve({ texts: raw.toText(text).split('+').filter(Boolean), closed });
    }, 1500);
  });
}

test('node with tcpProxyProtocol: a PROXY header from the trusted proxy address is accepted', { timeout: 5000 }, async () => {
  const r = await direct(px.env('NGINX_PROXY_BIND'), 'PROXY TCP4 192.0.2.7 127.0.0.1 40000 6021\r\n');
  assert.deepEqual(r.texts, ['C|CH', 'C|A']);
  assert.equal(r.closed, false);
});

test('node with tcpProxyProtocol: a connection without a PROXY header is not served', { timeout: 5000 }, async () => {
  const r = await direct('127.0.0.2', '');
  assert.ok(!r.texts.includes('C|A'), `served without a PROXY header: ${JSON.stringify(r)}`);
  assert.equal(r.closed, true, `not closed: ${JSON.stringify(r)}`);
});

test('node with tcpProxyProtocol: a PROXY header from an untrusted address (127.0.0.1) is not believed', { timeout: 5000 }, async () => {
  const r = await direct('127.0.0.1', 'PROXY TCP4 192.0.2.7 127.0.0.1 40000 6021\r\n');
  assert.ok(!r.texts.includes('C|A'), `served a forged PROXY header: ${JSON.stringify(r)}`);
  assert.equal(r.closed, true, `not closed: ${JSON.stringify(r)}`);
});
