'use strict';
// Wire-level checks of the 2.x protocol with a raw websocket client (tests/node/lib/raw-ws.js):
// the suite of tests/node/suite/raw-wire.js in the 2.x dialect (handshake), and the 2.x pre-auth
// errors (PROTOCOL.md 3.1, 3.2, 4), error replies after login (3.7), the 2.x RPC ack format (3.5)
// and the HTTP side of the endpoint (2.3).
// Reference captures: captures/v2/raw-handshake-open-auth.log, raw-auth-before-challenge-response.log,
// raw-message-before-auth.log, raw-auth-invalid-json.log, raw-unknown-topic.log,
// raw-known-action-wrong-topic.log, raw-too-short-ignored.log, raw-unknown-action-CRASH.log.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { US, RS, closeRaws } = require('../lib/wire');
const dialect = require('../lib/dialect').v2;

require('../suite/raw-wire')(dialect);

const { ds, raw, OPEN } = dialect;

/** all text received in the frames from index `from`, in capture notation, pings left out */
const frameText = (c, from = 0) =>
  c.frames
    .slice(from)
    .map((f) => raw.toText(f.text))
    .filter((x) => x !== 'C|PI+')
    .join('');

test('raw pre-auth: other topics before CHR get C|E|INVALID_MESSAGE (socket stays open), C|PO is ignored, then the handshake works', { timeout: 10000 }, async () => {
  const c = await raw.connect(OPEN(), { label: 'raw-early' });
  try {
    await c.waitForMessage('C|CH');
    c.send('A', 'REQ', JSON.stringify({ username: 'alice' }));
    await c.waitForMessage('C|E|INVALID_MESSAGE|invalid connection message');
    c.send('E', 'S', 'someEvent');
    await c.waitFor((m) => m.join('|') === 'C|E|INVALID_MESSAGE|invalid connection message', 3000, 2, 'a second INVALID_MESSAGE');
    c.send('C', 'PO'); // accepted (and ignored) in every state
    c.send('C', 'CHR', `ws://${OPEN()}/deepstream`);
    await c.waitForMessage('C|A');
    c.send('C', 'PO');
    c.send('A', 'REQ', JSON.stringify({ username: ds.uid('late') }));
    await c.waitForMessage('A|A');
    assert.deepEqual(c.texts(), [
      'C|CH',
      'C|E|INVALID_MESSAGE|invalid connection message',
      'C|E|INVALID_MESSAGE|invalid connection message',
      'C|A',
      'A|A',
    ]);
    assert.equal(c.closed, false);
  } finally {
    await c.close();
  }
});

test('raw pre-auth: an unparseable message before CHR gets C|E|MESSAGE_PARSE_ERROR|<raw unit> and the socket is closed', { timeout: 10000 }, async () => {
  const c = await raw.connect(OPEN(), { label: 'raw-garbage' });
  try {
    await c.waitForMessage('C|CH');
    c.sendWire('hello world' + RS);
    await c.waitClosed(3000);
    // observed with 2.4.1: the payload is the whole unit including its 0x1E (so the reply ends
    // with two 0x1E), and the socket is dropped without a close frame
    assert.equal(frameText(c, 1), 'C|E|MESSAGE_PARSE_ERROR|hello world++');
    assert.equal(c.closeCode, 1006);
  } finally {
    await c.close();
  }
});

test('raw auth: after C|A a first message that is not a valid A|REQ gets A|E|INVALID_AUTH_MSG and the socket is closed', { timeout: 10000 }, async () => {
  const cases = [
    ['E|S|someEvent+', 'not an auth message'],
    ['A|REQ|{notjson+', 'invalid JSON'],
    ['A|REQ|{}|extra+', 'two data fields'],
  ];
  const clients = [];
  try {
    for (const [wire, what] of cases) {
      const c = await raw.connect(OPEN(), { label: `raw-auth (${what})` });
      clients.push(c);
      await c.handshake();
      const from = c.received.length;
      c.sendText(wire);
      await c.waitClosed(3000);
      assert.deepEqual(c.texts(from), ['A|E|INVALID_AUTH_MSG|invalid authentication message'], what);
    }
  } finally {
    await closeRaws(clients);
  }
});

test('raw after login: unknown topic, action of another topic, C/A messages, too-short pieces; the socket stays open', { timeout: 10000 }, async () => {
  const name = ds.uid('still-here');
  const c = await raw.connect(OPEN(), { auth: { username: ds.uid('raw') }, label: 'raw-errors' });
  try {
    const from = c.received.length;
    c.sendText('Z|S|foo+');
    await c.waitForMessage('X|E|UNKNOWN_TOPIC|Z', 3000, from);
    c.sendText('E|CR|foo+');
    await c.waitForMessage('E|E|UNKNOWN_ACTION|unknown action CR', 3000, from);
    // presence errors are reported on topic E
    c.sendText('U|CR|foo+');
    await c.waitFor((m, i) => i > from + 1 && m.join('|') === 'E|E|UNKNOWN_ACTION|unknown action CR', 3000, from, 'the presence UNKNOWN_ACTION');
    // after login the connection and auth topics have no handler
    c.sendText(`C|CHR|ws://${OPEN()}/deepstream+`);
    await c.waitForMessage('X|E|UNKNOWN_TOPIC|C', 3000, from);
    c.sendText('A|REQ|{}+');
    await c.waitForMessage('X|E|UNKNOWN_TOPIC|A', 3000, from);
    // pieces of 2 characters or fewer are dropped silently
    c.sendText('E+');
    c.sendText('EE+');
    c.sendText(`E|S|${name}+`);
    await c.waitForMessage(['E', 'A', 'S', name], 3000, from);
    assert.deepEqual(c.texts(from), [
      'X|E|UNKNOWN_TOPIC|Z',
      'E|E|UNKNOWN_ACTION|unknown action CR',
      'E|E|UNKNOWN_ACTION|unknown action CR',
      'X|E|UNKNOWN_TOPIC|C',
      'X|E|UNKNOWN_TOPIC|A',
      `E|A|S|${name}`,
    ]);
    assert.equal(c.closed, false);
  } finally {
    await c.close();
  }
});

test('raw rpc: the 2.x ack is P|A|REQ|<name>|<cid>; a 1.x-style ack is refused and the request then hits ACK_TIMEOUT', { timeout: 10000 }, async () => {
  const name = `${ds.uid('rawrpc')}/x`;
  const list = [];
  try {
    const [p, c] = await Promise.all([
      raw.connect(OPEN(), { auth: { username: ds.uid('prov') }, label: 'provider' }),
      raw.connect(OPEN(), { auth: { username: ds.uid('caller') }, label: 'caller' }),
    ]);
    list.push(p, c);
    let p0 = p.received.length;
    p.send('P', 'S', name);
    await p.waitForMessage(['P', 'A', 'S', name], 3000, p0);

    // the 2.x format: forwarded verbatim
    const c0 = c.received.length;
    c.send('P', 'REQ', name, 'corr1', 'O{"q":1}');
    await p.waitForMessage(['P', 'REQ', name, 'corr1', 'O{"q":1}'], 3000, p0);
    p.send('P', 'A', 'REQ', name, 'corr1');
    await c.waitForMessage(['P', 'A', 'REQ', name, 'corr1'], 3000, c0);
    p.send('P', 'RES', name, 'corr1', 'N42');
    await c.waitForMessage(['P', 'RES', name, 'corr1', 'N42'], 3000, c0);

    // the 1.x format
    p0 = p.received.length;
    const c1 = c.received.length;
    const t0 = Date.now();
    c.send('P', 'REQ', name, 'corr2', 'U');
    await p.waitForMessage(['P', 'REQ', name, 'corr2', 'U'], 3000, p0);
    p.send('P', 'A', name, 'corr2');
    const err = await p.waitFor((m) => m[0] === 'P' && m[1] === 'E', 3000, p0, 'the error for the 1.x-style ack');
    // the text names what 2.4.1 reads as the rpc name: field 3 of `P|A|<name>|<cid>`, the cid
    assert.equal(err.join('|'), 'P|E|INVALID_RPC_CORRELATION_ID|unexpected state for rpc corr2 with action A');
    await c.waitForMessage(['P', 'E', 'ACK_TIMEOUT', name, 'corr2'], 3000, c1);
    const ms = Date.now() - t0;
    assert.ok(ms >= 900 && ms < 2000, `ACK_TIMEOUT after ${ms} ms (rpcAckTimeout is 1000)`);
    assert.deepEqual(c.texts(c0), [
      `P|A|REQ|${name}|corr1`,
      `P|RES|${name}|corr1|N42`,
      `P|E|ACK_TIMEOUT|${name}|corr2`,
    ]);
  } finally {
    await closeRaws(list);
  }
});

test('raw after login: an unparseable message gets X|E|MESSAGE_PARSE_ERROR|<raw> and the connection stays open', { timeout: 10000 }, async (t) => {
  if (ds.target() !== 'corestream') {
    // PROTOCOL.md 3.7: deepstream.io 2.4.1 reads `.topic` of null in message-processor.js and the
    // whole server process exits (captures/v2/raw-unknown-action-CRASH.log). There is nothing
    // to compare against, and running it would kill the reference server for the other tests.
    t.skip('the reference deepstream.io 2.4.1 crashes on this input (PROTOCOL.md 3.7); runs with DS2_TARGET=corestream only');
    return;
  }
  const name = ds.uid('after-garbage');
  const c = await raw.connect(OPEN(), { auth: { username: ds.uid('raw') }, label: 'raw-parse' });
  try {
    for (const unit of ['E' + US + 'ZZ' + US + 'foo' + RS, 'hello world' + RS]) {
      const f0 = c.frames.length;
      const from = c.received.length;
      c.sendWire(unit);
      const body = unit.slice(0, -1).split(US);
      await c.waitFor((m) => m.slice(0, 3).join('|') === 'X|E|MESSAGE_PARSE_ERROR', 3000, from, `the parse error for ${raw.toText(unit)}`);
      await ds.sleep(50);
      const got = c.received.slice(from).filter((m) => m.join('|') !== 'C|PI');
      assert.deepEqual(got, [['X', 'E', 'MESSAGE_PARSE_ERROR'].concat(body)]);
      // the payload is the raw unit (1.x style: with its 0x1E, so the reply ends with two)
      const text = frameText(c, f0);
      assert.ok(
        text === `X|E|MESSAGE_PARSE_ERROR|${raw.toText(unit)}+` || text === `X|E|MESSAGE_PARSE_ERROR|${raw.toText(unit)}`,
        text
      );
    }
    const from = c.received.length;
    c.send('E', 'S', name);
    await c.waitForMessage(['E', 'A', 'S', name], 3000, from);
    assert.equal(c.closed, false);
  } finally {
    await c.close();
  }
});

test('http: GET /health-check answers 200 with an empty body; a websocket upgrade on another path is refused', { timeout: 10000 }, async () => {
  const [host, port] = OPEN().split(':');
  const res = await ds.withTimeout(
    new Promise((resolve, reject) => {
      const req = http.get({ host, port: Number(port), path: '/health-check', agent: false }, (r) => {
        let body = '';
        r.setEncoding('utf8');
        r.on('data', (d) => (body += d));
        r.on('end', () => resolve({ status: r.statusCode, body }));
      });
      req.on('error', reject);
    }),
    3000,
    'GET /health-check'
  );
  assert.deepEqual(res, { status: 200, body: '' });

  const ws = new raw.WebSocket(`ws://${OPEN()}/not-deepstream`);
  const outcome = await ds.withTimeout(
    new Promise((resolve) => {
      ws.on('open', () => resolve('open'));
      ws.on('unexpected-response', (req, r) => {
        resolve(`status ${r.statusCode}`);
        req.abort();
      });
      ws.on('error', (e) => resolve(`error ${e.message}`));
    }),
    3000,
    'the upgrade on another path'
  );
  try {
    ws.terminate();
  } catch (e) {
    /* ignore */
  }
  assert.equal(outcome, 'status 400');
});
