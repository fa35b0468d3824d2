'use strict';
// Events across the three nodes of scripts/cluster-tests.sh, with the real clients:
// deepstream.io-client-js 1.1.1 over TCP (tests/node/lib/ds.js) and 2.3.4 over WebSocket
// (tests/node/lib/ds2.js). A node follows an event's Redis channel only once it has a
// subscriber, and that takes a Redis round trip after the `E|A|S` ack, so every phase starts
// with a barrier: the emitter emits {__sync} values until every subscriber that must be reached
// got one; what follows is then checked exactly.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds1 = require('../lib/ds');
const ds2 = require('../lib/ds2');
const cluster = require('../lib/cluster');
const { libOf, openEach, isSync, isEnd, barrier, evtTexts, TYPED_PAYLOADS, closeClients } = require('../lib/ops');

/** ... without the barrier values */
const evtPayloads = (client, name, from = 0) => evtTexts(client, name, from).filter((t) => !t.includes('"__sync"'));

const PAYLOADS = [{ a: 1, b: [true, null], s: 'x|y' }, ...TYPED_PAYLOADS, undefined];

test('events across nodes: 1.1.1 and 2.3.4 subscribers on nodes 1 and 2 get every typed event of both libraries on node 3 exactly once; no echo; unsubscribe stops delivery; a node without subscribers gets nothing', { timeout: 30000 }, async (t) => {
  const [n1, n2, n3] = cluster.nodes();
  const prefix = ds1.uid('cev');
  const name = `${prefix}/typed`;
  const clients = [];
  try {
    const [subA, subB, keepC1, keepC2, em1, em2] = await openEach(clients, [
      [ds1, n1.tcp, 'sub-v1', 'sub-v1@node1'],
      [ds2, n2.http, 'sub-v2', 'sub-v2@node2'],
      [ds2, n1.http, 'keep-v2', 'keep-v2@node1'],
      [ds1, n2.tcp, 'keep-v1', 'keep-v1@node2'],
      [ds1, n3.tcp, 'emit-v1', 'emit-v1@node3'],
      [ds2, n3.http, 'emit-v2', 'emit-v2@node3'],
    ]);
    const all = { subA, subB, keepC1, keepC2, em1, em2 };
    const got = {};
    const cbs = {};
    for (const [key, c] of Object.entries(all)) {
      got[key] = [];
      cbs[key] = (v) => got[key].push(v);
      c.event.subscribe(name, cbs[key]);
    }
    await Promise.all(Object.values(all).map((c) => libOf(c).waitWire(c, `E|A|S|${name}`)));

    // both emitters reach every other subscriber (the emitters reach each other locally)
    await barrier((v) => em1.event.emit(name, v), { from: 'em1' }, [got.subA, got.subB, got.keepC1, got.keepC2, got.em2], 'em1 barrier');
    await barrier((v) => em2.event.emit(name, v), { from: 'em2' }, [got.subA, got.subB, got.keepC1, got.keepC2, got.em1], 'em2 barrier');
    const receivers = (except) => Object.keys(all).filter((k) => k !== except);

    // one phase per emitter: every typed payload, then an end marker
    for (const [emKey, em, tag] of [
      ['em1', em1, 1],
      ['em2', em2, 2],
    ]) {
      const marks = Object.fromEntries(Object.entries(all).map(([k, c]) => [k, { wire: c.wire.length, got: got[k].length }]));
      for (const p of PAYLOADS) em.event.emit(name, p);
      em.event.emit(name); // no data at all: `U` too
      em.event.emit(name, { __end: tag });
      const expected = PAYLOADS.concat([undefined, { __end: tag }]);
      await ds2.waitFor(
        () => receivers(emKey).every((k) => got[k].some((v) => isEnd(v, tag))),
        5000,
        `every subscriber to receive the end marker of ${emKey}`
      );
      await ds1.sleep(250); // room for duplicates or an echo to arrive
      const texts = {};
      for (const k of receivers(emKey)) {
        const values = got[k].slice(marks[k].got).filter((v) => !isSync(v));
        assert.deepStrictEqual(values, expected, `${all[k].label} received ${JSON.stringify(values)} from ${emKey}`);
        texts[k] = evtPayloads(all[k], name, marks[k].wire);
      }
      // the same bytes everywhere, whatever node and library
      const first = receivers(emKey)[0];
      for (const k of receivers(emKey)) assert.deepEqual(texts[k], texts[first], `${all[k].label} got other bytes than ${all[first].label}`);
      assert.equal(texts[first].length, expected.length);
      // no echo: nothing came back to the emitter over the wire (its library called its own
      // callback locally: got[emKey] is exactly what it emitted)
      assert.deepEqual(evtTexts(em, name, marks[emKey].wire), [], `${em.label} got its own events back`);
      assert.deepStrictEqual(got[emKey].slice(marks[emKey].got), expected);
    }
    // the barrier values of an emitter never came back to it either
    for (const [emKey, em] of [
      ['em1', em1],
      ['em2', em2],
    ]) {
      assert.deepEqual(evtTexts(em, name).filter((x) => x.includes(`"from":"${emKey}"`)), [], `${em.label} got its own barrier values back`);
    }

    // the other direction: the 2.3.4 subscriber on node 2 emits
    {
      const marks = Object.fromEntries(Object.entries(all).map(([k, c]) => [k, c.wire.length]));
      subB.event.emit(name, 'from-node2');
      subB.event.emit(name, { __end: 3 });
      await ds2.waitFor(() => receivers('subB').every((k) => got[k].some((v) => isEnd(v, 3))), 5000, 'every other subscriber to receive the emit from node 2');
      await ds1.sleep(200);
      for (const k of receivers('subB')) {
        assert.deepEqual(evtTexts(all[k], name, marks[k]), [`E|EVT|${name}|Sfrom-node2`, `E|EVT|${name}|O{"__end":3}`], all[k].label);
      }
      assert.deepEqual(evtTexts(subB, name, marks.subB), [], 'the node 2 emitter got its own events back');
    }

    // unsubscribe: subA (node 1) and subB (node 2) leave; keepC1 and keepC2 stay on those nodes,
    // so the event still reaches nodes 1 and 2, just not them
    subA.event.unsubscribe(name, cbs.subA);
    subB.event.unsubscribe(name, cbs.subB);
    await Promise.all([ds1.waitWire(subA, `E|A|US|${name}`), ds2.waitWire(subB, `E|A|US|${name}`)]);
    {
      const marks = Object.fromEntries(Object.entries(all).map(([k, c]) => [k, c.wire.length]));
      em1.event.emit(name, 'after-unsubscribe');
      em1.event.emit(name, { __end: 4 });
      await ds2.waitFor(() => ['keepC1', 'keepC2', 'em2'].every((k) => got[k].some((v) => isEnd(v, 4))), 5000, 'the remaining subscribers to receive the events after the unsubscribes');
      await ds1.sleep(250);
      for (const k of ['keepC1', 'keepC2', 'em2']) {
        assert.deepEqual(evtTexts(all[k], name, marks[k]), [`E|EVT|${name}|Safter-unsubscribe`, `E|EVT|${name}|O{"__end":4}`], all[k].label);
      }
      assert.deepEqual(evtTexts(subA, name, marks.subA), [], 'subA (1.1.1, node 1) got events after unsubscribing');
      assert.deepEqual(evtTexts(subB, name, marks.subB), [], 'subB (2.3.4, node 2) got events after unsubscribing');
    }

    // the last subscribers of nodes 1 and 2 leave: those nodes stop following the channel
    keepC1.event.unsubscribe(name, cbs.keepC1);
    keepC2.event.unsubscribe(name, cbs.keepC2);
    await Promise.all([ds2.waitWire(keepC1, `E|A|US|${name}`), ds1.waitWire(keepC2, `E|A|US|${name}`)]);
    await cluster.eventually(
      async () => (await cluster.channelSubscribers(cluster.sharedRedis().port, `cs:e:${name}`)) === 1,
      5000,
      `only node 3 to follow cs:e:${name}`
    );
    {
      const marks = Object.fromEntries(Object.entries(all).map(([k, c]) => [k, c.wire.length]));
      em1.event.emit(name, 'nobody-on-nodes-1-and-2');
      em1.event.emit(name, { __end: 5 });
      await ds2.waitFor(() => got.em2.some((v) => isEnd(v, 5)), 5000, 'em2 (same node) to receive the fifth end marker');
      await ds1.sleep(250);
      for (const k of ['subA', 'subB', 'keepC1', 'keepC2']) assert.deepEqual(evtTexts(all[k], name, marks[k]), [], `${all[k].label} got events while unsubscribed`);
    }

    // subscribing again on node 1 works again
    const again = [];
    const resub = subA.wire.length;
    subA.event.subscribe(name, (v) => again.push(v));
    await ds1.waitWire(subA, `E|A|S|${name}`, 3000, resub);
    await barrier((v) => em2.event.emit(name, v), { from: 'em2-again' }, [again], 'resubscribe barrier');
    em2.event.emit(name, 'welcome back');
    await ds2.waitFor(() => again.includes('welcome back'), 3000, 'subA to receive an event after subscribing again');

    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    t.diagnostic(`payloads per phase: ${PAYLOADS.length + 2}`);
  } finally {
    await closeClients(clients);
  }
});

test('events across nodes: a burst of 300 events from each of two nodes arrives complete and in order on every node', { timeout: 30000 }, async () => {
  const [n1, n2, n3] = cluster.nodes();
  const name = `${ds1.uid('cev-burst')}/b`;
  const N = 300;
  const clients = [];
  try {
    const [r1, r2, r3, e1, e3] = await openEach(clients, [
      [ds2, n1.http, 'r1', 'r1@node1'],
      [ds1, n2.tcp, 'r2', 'r2@node2'],
      [ds2, n3.http, 'r3', 'r3@node3'],
      [ds1, n1.tcp, 'e1', 'e1@node1'],
      [ds2, n3.http, 'e3', 'e3@node3'],
    ]);
    const got = [[], [], []];
    [r1, r2, r3].forEach((c, i) => c.event.subscribe(name, (v) => got[i].push(v)));
    await Promise.all([ds2.waitWire(r1, `E|A|S|${name}`), ds1.waitWire(r2, `E|A|S|${name}`), ds2.waitWire(r3, `E|A|S|${name}`)]);
    await barrier((v) => e1.event.emit(name, v), { from: 'e1' }, got, 'e1 barrier');
    await barrier((v) => e3.event.emit(name, v), { from: 'e3' }, got, 'e3 barrier');
    for (let i = 0; i < N; i++) {
      e1.event.emit(name, { from: 'e1', i });
      e3.event.emit(name, { from: 'e3', i });
    }
    await ds2.waitFor(
      () => got.every((l) => ['e1', 'e3'].every((f) => l.some((v) => v && v.from === f && v.i === N - 1))),
      10000,
      () => `every subscriber to receive both bursts (counts ${got.map((l) => l.filter((v) => !isSync(v)).length).join('/')})`
    );
    await ds1.sleep(200);
    got.forEach((l, k) => {
      for (const f of ['e1', 'e3']) {
        const seq = l.filter((v) => !isSync(v) && v.from === f).map((v) => v.i);
        assert.deepEqual(seq, Array.from({ length: N }, (_, i) => i), `subscriber ${k + 1}: the burst of ${f} is not 0..${N - 1} in order`);
      }
    });
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await closeClients(clients);
  }
});
