'use strict';
// Events with the real client library of a dialect (tests/node/lib/dialect.js: 1.1.1 over TCP,
// 2.3.4 over websocket): fan-out to many subscribers, typed payloads, ordering, no echo to the
// publisher, unsubscribe. Run by tests/node/v1/events.test.js and tests/node/v2/events.test.js.
// Reference captures: captures/v1 and captures/v2, lib-event-subscribe-emit-unsubscribe.log,
// raw-event-typed-payloads.log.
const test = require('node:test');
const assert = require('node:assert/strict');
const { isSync, isEnd, TYPED_PAYLOADS } = require('../lib/ops');

const N_SUBSCRIBERS = 8; // plus one publisher: 9 clients

module.exports = function eventsSuite(dialect) {
  const { ds, OPEN } = dialect;

  /**
   * Emits {__sync: k} on `name` every 20 ms until every list in `lists` (the values received by
   * the clients whose subscriptions must be in place) contains a sync value. After that, every
   * later emit of `pub` on `name` is known to reach all of them.
   */
  async function syncBarrier(pub, name, lists, emitted, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    let k = 0;
    while (!lists.every((l) => l.some(isSync))) {
      if (Date.now() > deadline) {
        throw new Error(`subscriptions to ${name} not effective after ${timeoutMs} ms (sync seen by ${lists.filter((l) => l.some(isSync)).length}/${lists.length})`);
      }
      const v = { __sync: k++ };
      pub.event.emit(name, v);
      if (emitted) emitted.push(v);
      await ds.sleep(20);
    }
  }

  test('events: 8 subscribers get every typed payload exactly once and in order; no echo; unsubscribe stops delivery', { timeout: 30000 }, async () => {
    const prefix = ds.uid('ev');
    const name = `${prefix}/typed`;
    const ctl = `${prefix}/ctl`;
    const clients = [];
    try {
      const pub = await ds.open(OPEN(), { username: 'publisher' }, 'publisher');
      clients.push(pub);
      const subs = await Promise.all(
        Array.from({ length: N_SUBSCRIBERS }, (_, i) => ds.open(OPEN(), { username: `sub${i}` }, `sub${i}`))
      );
      clients.push(...subs);

      const got = subs.map(() => []);
      const callbacks = subs.map((c, i) => (v) => got[i].push(v));
      subs.forEach((c, i) => c.event.subscribe(name, callbacks[i]));

      // The publisher subscribes too: the library calls its callback locally on emit; the server
      // must not echo the event back to the sender.
      const pubGot = [];
      pub.event.subscribe(name, (v) => pubGot.push(v));
      await ds.waitWire(pub, `E|A|S|${name}`);
      const emitted = []; // everything pub emitted on `name`, in order (what its own callback must see)

      await syncBarrier(pub, name, got, emitted);

      // (emit(name, undefined) -> `U`)
      const payloads = [{ a: 1, b: [true, null] }, ...TYPED_PAYLOADS, undefined];
      for (const p of payloads) {
        pub.event.emit(name, p);
        emitted.push(p);
      }
      pub.event.emit(name); // no data at all: also `U`, received as undefined
      emitted.push(undefined);
      const expected = payloads.concat([undefined]);

      const end1 = { __end: 1 };
      pub.event.emit(name, end1);
      emitted.push(end1);
      await ds.waitFor(() => got.every((l) => l.some((v) => isEnd(v, 1))), 5000, 'every subscriber to receive the end marker');

      got.forEach((l, i) => {
        const afterSync = l.filter((v) => !isSync(v));
        // sync values may only come before the payloads
        const lastSync = l.map(isSync).lastIndexOf(true);
        const firstPayload = l.findIndex((v) => !isSync(v));
        assert.ok(lastSync < firstPayload, `sub${i}: a sync value arrived after a payload`);
        assert.deepStrictEqual(afterSync, expected.concat([end1]), `sub${i} received ${JSON.stringify(afterSync)}`);
        assert.equal(afterSync.length, expected.length + 1, `sub${i}: every payload exactly once`);
      });

      // the wire: every subscriber got the typed encodings of the client, forwarded verbatim
      const typed = [
        'O{"a":1,"b":[true,null]}',
        'Shello',
        'S',
        'Swith spaces, unicode \u00e9\u2713 and "quotes"',
        'N42.5',
        'N-7',
        'N0',
        'N1e+21',
        'T',
        'F',
        'L',
        'O[1,"x",{"y":[2]}]',
        'O[]',
        'O{}',
        'U',
        'U',
        'O{"__end":1}',
      ];
      subs.forEach((c) => {
        const evts = c.wire.filter((m) => m[0] === 'E' && m[1] === 'EVT' && m[2] === name).map((m) => m.slice(3).join('|'));
        assert.deepEqual(evts.filter((x) => !x.startsWith('O{"__sync"')), typed, `${c.label} wire`);
      });

      // no echo: give a server echo time to arrive, then check the publisher's callback saw
      // each of its own emits exactly once (the library's local call) and nothing came back
      // over the wire
      await ds.sleep(250);
      assert.deepStrictEqual(pubGot, emitted);
      const echoes = pub.wire.filter((m) => m[0] === 'E' && m[1] === 'EVT');
      assert.deepEqual(echoes, [], 'the server echoed events back to the publisher');

      // --- unsubscribe: the first half unsubscribes, the second half stays
      const leaving = subs.slice(0, N_SUBSCRIBERS / 2);
      const staying = subs.slice(N_SUBSCRIBERS / 2);
      const leavingIdx = leaving.map((_, i) => i);
      leaving.forEach((c, i) => c.event.unsubscribe(name, callbacks[i]));
      await Promise.all(leaving.map((c) => ds.waitWire(c, `E|A|US|${name}`)));
      // a later subscription on the same connections, proven effective with a barrier, shows the
      // server has processed the unsubscribes (per-connection order)
      const ctlGot = leaving.map(() => []);
      leaving.forEach((c, i) => c.event.subscribe(ctl, (v) => ctlGot[i].push(v)));
      await syncBarrier(pub, ctl, ctlGot, null);

      const wireMark = leaving.map((c) => c.wire.length);
      const countBefore = leavingIdx.map((i) => got[i].length);
      pub.event.emit(name, 'after-unsubscribe');
      const end2 = { __end: 2 };
      pub.event.emit(name, end2);
      await ds.waitFor(
        () => staying.every((_, j) => got[N_SUBSCRIBERS / 2 + j].some((v) => isEnd(v, 2))),
        5000,
        'the remaining subscribers to receive the second end marker'
      );
      await ds.sleep(200);
      staying.forEach((_, j) => {
        const l = got[N_SUBSCRIBERS / 2 + j];
        assert.deepStrictEqual(l.slice(-2), ['after-unsubscribe', end2]);
      });
      leaving.forEach((c, i) => {
        const evts = c.wire.slice(wireMark[i]).filter((m) => m[0] === 'E' && m[1] === 'EVT' && m[2] === name);
        assert.deepEqual(evts, [], `${c.label} still received events for ${name} after unsubscribing`);
        assert.equal(got[i].length, countBefore[i]);
      });

      for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    } finally {
      await ds.closeAll(clients);
    }
  });

  test('events: a subscriber that disconnects stops receiving, the others are not affected', { timeout: 15000 }, async () => {
    const name = `${ds.uid('ev-dc')}/x`;
    const clients = [];
    try {
      const [pub, s1, s2] = await ds.openAll(OPEN(), ['pub', 's1', 's2'], clients);
      const g1 = [];
      const g2 = [];
      s1.event.subscribe(name, (v) => g1.push(v));
      s2.event.subscribe(name, (v) => g2.push(v));
      await syncBarrier(pub, name, [g1, g2], null);
      await ds.close(s1);
      // the publisher keeps emitting: s2 must get everything, the server must not choke on s1
      for (let i = 0; i < 50; i++) pub.event.emit(name, i);
      pub.event.emit(name, { __end: 1 });
      await ds.waitFor(() => g2.some((v) => isEnd(v, 1)), 5000, 's2 to receive the end marker');
      assert.deepStrictEqual(
        g2.filter((v) => !isSync(v)),
        Array.from({ length: 50 }, (_, i) => i).concat([{ __end: 1 }])
      );
      assert.deepEqual(pub.errors, []);
      assert.deepEqual(s2.errors, []);
    } finally {
      await ds.closeAll(clients);
    }
  });
};
