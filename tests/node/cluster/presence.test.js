'use strict';
// Presence (2.x only) across the three nodes of scripts/cluster-tests.sh with the real
// deepstream.io-client-js 2.3.4: a username joins (PNJ) on its first login anywhere in the
// cluster and leaves (PNL) on its last logout anywhere; getAll lists the cluster's users
// without the caller's.
// Library behaviours: see tests/node/v2/presence.test.js (the client's ack registry does not
// match `U|A|S|U`, so it reports an ACK_TIMEOUT error 2 s after subscribe: tolerated).
// Other test files may run on the same cluster, so every check is limited to this file's
// unique usernames.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds2');
const cluster = require('../lib/cluster');

const { getAll, isPresenceAckTimeout } = require('../lib/ops');

/** getAll until pred(the prefixed usernames, sorted) holds; returns them */
async function getAllUntil(client, prefix, pred, what, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    const args = await getAll(client);
    assert.equal(args.length, 1, `getAll called back with ${JSON.stringify(args)}`);
    last = args[0].filter((n) => n.startsWith(prefix)).sort();
    if (pred(last)) return last;
    if (Date.now() > deadline) throw new Error(`${client.label}: getAll never showed ${what}; last: ${JSON.stringify(last)}`);
    await ds.sleep(30);
  }
}

test('presence across nodes: PNJ on the first login anywhere, none for a second login elsewhere, PNL on the last logout anywhere; getAll returns the cluster\'s users minus the caller', { timeout: 30000 }, async (t) => {
  const [n1, n2, n3] = cluster.nodes();
  const prefix = ds.uid('cpr');
  const u1 = `${prefix}-one`;
  const u2 = `${prefix}-two`;
  const w1Name = `${prefix}-watch1`;
  const w3Name = `${prefix}-watch3`;
  const clients = [];
  try {
    const [w1, w3] = await Promise.all([ds.open(n1.http, { username: w1Name }, 'watcher@node1'), ds.open(n3.http, { username: w3Name }, 'watcher@node3')]);
    clients.push(w1, w3);
    const events = { w1: [], w3: [] };
    for (const [k, w] of [
      ['w1', w1],
      ['w3', w3],
    ]) {
      w.presence.subscribe((username, loggedIn) => {
        // (the watchers log in at the same time: one may see the other join; left out)
        if (username.startsWith(prefix) && username !== w1Name && username !== w3Name) events[k].push([username, loggedIn]);
      });
      await ds.waitWire(w, 'U|A|S|U');
    }
    const presenceTexts = (w) => ds.wireTexts(w).filter((x) => /^U\|PN[JL]\|/.test(x) && x.includes(prefix) && !x.endsWith(w1Name) && !x.endsWith(w3Name));

    // each watcher sees the other (logged in on another node)
    assert.deepEqual(await getAllUntil(w1, prefix, (l) => l.includes(w3Name), `${w3Name}`), [w3Name]);
    assert.deepEqual(await getAllUntil(w3, prefix, (l) => l.includes(w1Name), `${w1Name}`), [w1Name]);

    // u1 logs in on node 2: one PNJ for both watchers (nodes 1 and 3)
    const u1a = await ds.open(n2.http, { username: u1 }, 'u1@node2');
    clients.push(u1a);
    await ds.waitFor(() => events.w1.length >= 1 && events.w3.length >= 1, 3000, () => `both watchers to see ${u1} join (${JSON.stringify(events)})`);
    // u1 again on node 3, u2 on node 1 (the first watcher's own node)
    const u1b = await ds.open(n3.http, { username: u1 }, 'u1@node3');
    clients.push(u1b);
    const u2a = await ds.open(n1.http, { username: u2 }, 'u2@node1');
    clients.push(u2a);
    await ds.waitFor(() => events.w1.length >= 2 && events.w3.length >= 2, 3000, () => `both watchers to see ${u2} join (${JSON.stringify(events)})`);
    await ds.sleep(200);
    for (const k of ['w1', 'w3']) {
      assert.deepEqual(events[k], [
        [u1, true],
        [u2, true],
      ], `watcher ${k}: a second login of ${u1} on another node counted as a join?`);
    }

    // getAll everywhere: the cluster's users, never the caller's own username
    assert.deepEqual(await getAllUntil(w1, prefix, (l) => l.length === 3, 'three users'), [u2, u1, w3Name].sort());
    assert.deepEqual(await getAllUntil(w3, prefix, (l) => l.length === 3, 'three users'), [u2, u1, w1Name].sort());
    // u1 is logged in on nodes 2 and 3; asking from either, u1 is left out
    assert.deepEqual(await getAllUntil(u1a, prefix, (l) => l.length === 3, 'three users'), [u2, w1Name, w3Name].sort());
    assert.deepEqual(await getAllUntil(u1b, prefix, (l) => l.length === 3, 'three users'), [u2, w1Name, w3Name].sort());
    assert.deepEqual(await getAllUntil(u2a, prefix, (l) => l.length === 3, 'three users'), [u1, w1Name, w3Name].sort());
    // the reply on the wire: `U|Q|<user>|<user>...`
    const reply = w1.wire.filter((m) => m[0] === 'U' && m[1] === 'Q').pop();
    assert.deepEqual(reply.slice(2).filter((n) => n.startsWith(prefix)).sort(), [u2, u1, w3Name].sort());

    // u1 leaves node 2: still on node 3, no PNL
    await ds.close(u1a);
    await ds.sleep(400);
    assert.equal(events.w1.length, 2, `a PNL while ${u1} was still on node 3: ${JSON.stringify(events.w1)}`);
    assert.equal(events.w3.length, 2, `a PNL while ${u1} was still on node 3: ${JSON.stringify(events.w3)}`);
    assert.deepEqual(await getAllUntil(w1, prefix, () => true, ''), [u2, u1, w3Name].sort());
    // u1 leaves node 3: PNL once for both watchers
    await ds.close(u1b);
    await ds.waitFor(() => events.w1.length >= 3 && events.w3.length >= 3, 3000, () => `both watchers to see ${u1} leave (${JSON.stringify(events)})`);
    // u2 leaves node 1
    await ds.close(u2a);
    await ds.waitFor(() => events.w1.length >= 4 && events.w3.length >= 4, 3000, () => `both watchers to see ${u2} leave (${JSON.stringify(events)})`);
    await ds.sleep(200);
    for (const [k, w] of [
      ['w1', w1],
      ['w3', w3],
    ]) {
      assert.deepEqual(events[k], [
        [u1, true],
        [u2, true],
        [u1, false],
        [u2, false],
      ]);
      assert.deepEqual(presenceTexts(w), [`U|PNJ|${u1}`, `U|PNJ|${u2}`, `U|PNL|${u1}`, `U|PNL|${u2}`], w.label);
    }
    assert.deepEqual(await getAllUntil(w1, prefix, (l) => l.length === 1, 'only the other watcher'), [w3Name]);
    assert.deepEqual(await getAllUntil(w3, prefix, (l) => l.length === 1, 'only the other watcher'), [w1Name]);

    // a watcher that unsubscribes hears no more
    const w1mark = w1.wire.length;
    w1.presence.unsubscribe();
    await ds.waitWire(w1, 'U|A|US|U', 3000, w1mark);
    const late = await ds.open(n2.http, { username: `${prefix}-late` }, 'late@node2');
    clients.push(late);
    await ds.waitFor(() => events.w3.length >= 5, 3000, `watcher 3 to see ${prefix}-late join`);
    await ds.sleep(200);
    assert.deepEqual(ds.wireTexts(w1, w1mark).filter((x) => x.includes(prefix) && x.startsWith('U|PN')), [], 'presence messages after unsubscribe');

    t.diagnostic(`watcher errors: ${JSON.stringify(w1.errors.concat(w3.errors))}`);
    for (const w of [w1, w3]) assert.deepEqual(ds.errorsExcept(w, isPresenceAckTimeout), [], `${w.label} had errors`);
    for (const c of clients.slice(2)) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});
