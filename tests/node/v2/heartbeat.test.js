'use strict';
// 2.x heartbeat (PROTOCOL.md 2.3, 9.4), with heartbeatInterval 2000 ms (tests/fixtures/v2-open.yml).
//
// The server sends the deepstream message `C|PI` as a websocket TEXT frame on every tick of its
// heartbeat timer (every heartbeatInterval, at a phase of its own). A socket that sent nothing
// since the previous tick is terminated at the next tick without a close frame (the client sees
// code 1006). Observed with 2.4.1: a silent client gets one `C|PI` (0-2000 ms after its last
// message) and is dropped exactly one interval after that ping; a client that answers each ping
// with `C|PO` stays, getting a ping every 2000 ms (+-10 ms).
//
// The tests run concurrently (each needs 3-4 intervals).
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds2');
const raw = require('../lib/raw-ws');

const OPEN = () => ds.env('DS2_OPEN_URL');
const HB = 2000; // connectionEndpoints.websocket.options.heartbeatInterval
const SLACK = 400; // scheduling slack (2 cores shared with two servers and the clients)
const PING_FRAME = 'C' + raw.US + 'PI' + raw.RS;

/** polls until the client is closed or `ms` passed */
async function watch(c, ms) {
  const deadline = Date.now() + ms;
  while (!c.closed && Date.now() < deadline) await ds.sleep(20);
}

/** the times of the `C|PI` frames received after index `fromFrame` */
const pingTimes = (c, fromFrame = 0) => c.frames.slice(fromFrame).filter((f) => f.text === PING_FRAME).map((f) => f.at);

describe('heartbeat (2.x)', { concurrency: true }, () => {
  it('heartbeat: a logged-in raw client that never answers C|PI gets a C|PI text frame and is dropped (1006) at the next tick', { timeout: 15000 }, async (t) => {
    const c = await raw.connect(OPEN(), { auth: { username: ds.uid('silent') }, label: 'silent', autoPong: false });
    try {
      const loggedIn = Date.now();
      const lastSent = c.sentAt[c.sentAt.length - 1];
      const f0 = c.frames.length;
      await watch(c, 2 * HB + 2 * SLACK + 1000);
      assert.ok(c.closed, `the silent client was not dropped within ${2 * HB + 2 * SLACK + 1000} ms; frames: ${JSON.stringify(c.frames.slice(f0).map((f) => raw.toText(f.text)))}`);
      assert.equal(c.closeCode, 1006, 'expected no close frame (code 1006)');
      // nothing but pings arrived after the login, and they are text frames carrying exactly `C|PI+`
      const after = c.frames.slice(f0);
      assert.ok(after.length >= 1, 'no C|PI before the drop');
      assert.deepEqual(after.map((f) => raw.toText(f.text)), after.map(() => 'C|PI+'));
      const pings = pingTimes(c, f0);
      assert.ok(pings[0] - lastSent <= HB + SLACK, `the first C|PI came ${pings[0] - lastSent} ms after the last message`);
      // dropped one interval after the last unanswered ping, 1..2 intervals after the last message
      const sincePing = c.closedAt - pings[pings.length - 1];
      const sinceSent = c.closedAt - lastSent;
      assert.ok(sincePing >= HB - SLACK && sincePing <= HB + SLACK, `dropped ${sincePing} ms after the last C|PI (interval ${HB})`);
      assert.ok(sinceSent >= HB - SLACK && sinceSent <= 2 * HB + SLACK, `dropped ${sinceSent} ms after the last message (1-2 intervals of ${HB})`);
      t.diagnostic(`silent client: pings at ${pings.map((p) => p - loggedIn).join(', ')} ms after login, dropped at ${c.closedAt - loggedIn} ms (code ${c.closeCode})`);
    } finally {
      await c.close();
    }
  });

  it('heartbeat: a socket that never answers the challenge is dropped the same way', { timeout: 15000 }, async () => {
    const c = await raw.connect(OPEN(), { label: 'mute', autoPong: false });
    try {
      await c.waitForMessage('C|CH');
      const opened = Date.now();
      await watch(c, 2 * HB + 2 * SLACK + 1000);
      assert.ok(c.closed, 'the mute socket was not dropped');
      assert.equal(c.closeCode, 1006);
      assert.deepEqual(c.texts(), ['C|CH']);
      assert.ok(c.allTexts().includes('C|PI'), 'no C|PI before the drop');
      assert.ok(c.closedAt - opened <= 2 * HB + SLACK, `dropped ${c.closedAt - opened} ms after the challenge`);
    } finally {
      await c.close();
    }
  });

  it('heartbeat: a raw client that answers every C|PI with C|PO stays connected beyond 3 intervals; pings come every interval', { timeout: 20000 }, async (t) => {
    const c = await raw.connect(OPEN(), { auth: { username: ds.uid('ponger') }, label: 'ponger', autoPong: true });
    try {
      const f0 = c.frames.length;
      const loggedIn = Date.now();
      await watch(c, 3 * HB + 700);
      assert.equal(c.closed, false, `the answering client was dropped after ${c.closedAt - loggedIn} ms (code ${c.closeCode})`);
      const pings = pingTimes(c, f0);
      assert.ok(pings.length >= 3, `only ${pings.length} pings in ${3 * HB + 700} ms`);
      const gaps = pings.slice(1).map((p, i) => p - pings[i]);
      for (const g of gaps) assert.ok(g >= HB - SLACK && g <= HB + SLACK, `ping gaps ${gaps.join(', ')} ms (interval ${HB})`);
      // still fully usable
      const name = ds.uid('hb-alive');
      const from = c.received.length;
      c.send('E', 'S', name);
      await c.waitForMessage(['E', 'A', 'S', name], 3000, from);
      t.diagnostic(`answering client: pings at ${pings.map((p) => p - loggedIn).join(', ')} ms after login (gaps ${gaps.join(', ')})`);
    } finally {
      await c.close();
    }
  });

  it('heartbeat: the 2.3.4 library answers C|PI with C|PO by itself and stays connected beyond 3 intervals', { timeout: 20000 }, async () => {
    const name = ds.uid('hb-lib');
    const clients = [];
    try {
      const [a, b] = await ds.openAll(OPEN(), ['hb-a', 'hb-b'], clients, ds.uid);
      const got = [];
      b.event.subscribe(name, (v) => got.push(v));
      await ds.waitWire(b, `E|A|S|${name}`);
      await ds.sleep(3 * HB + 700);
      for (const c of [a, b]) {
        assert.equal(c.getConnectionState(), 'OPEN', `${c.label} is ${c.getConnectionState()}`);
        assert.equal(c.endpointClosed, false, `${c.label}'s websocket was closed`);
        const pi = c.wire.filter((m) => m.join('|') === 'C|PI').length;
        const po = c.sent.filter((m) => m.join('|') === 'C|PO').length;
        assert.ok(pi >= 3, `${c.label} got ${pi} pings`);
        assert.equal(po, pi, `${c.label} answered ${po} of ${pi} pings`);
      }
      a.event.emit(name, 'still here');
      await ds.waitFor(() => got.length === 1, 3000, 'the event after 3 intervals');
      assert.deepEqual(got, ['still here']);
      for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    } finally {
      await ds.closeAll(clients);
    }
  });
});
