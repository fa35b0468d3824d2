'use strict';
// Event listening with the real deepstream.io-client-js 2.3.4 (websocket): the suite of
// tests/node/suite/listen.js in the 2.x dialect, and the listen timeout as the reference server does it.
const test = require('node:test');
const assert = require('node:assert/strict');
const suite = require('../suite/listen');
const dialect = require('../lib/dialect').v2;

suite(dialect);

const { ds, OPEN } = dialect;
const { noop, listener, offers, removals } = suite;

test('listen timeout: listeners that never answer are each asked once, listenResponseTimeout apart; a later listener gets the name', { timeout: 15000 }, async (t) => {
  // 2.4.1 asks the matching listeners in random order (shuffleListenProviders: true), so two
  // silent listeners are used: whichever is asked first, the second must be asked only after
  // listenResponseTimeout (500 ms). Then nobody provides until a third listener accepts.
  const prefix = ds.uid('ls-tmo');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/x`;
  const clients = [];
  try {
    const [p1, p2, sub] = await ds.openAll(OPEN(), ['p1-silent', 'p2-silent', 'bob'], clients);
    // 2.3.4 never answers an offer by itself: a callback that ignores `response` is silent
    const c1 = listener(p1, pattern, null);
    const c2 = listener(p2, pattern, null);
    await ds.waitWire(p1, `E|A|L|${pattern}`);
    await ds.waitWire(p2, `E|A|L|${pattern}`);

    const t0 = Date.now();
    sub.event.subscribe(name, noop);
    await ds.waitFor(() => offers(c1).length >= 1 && offers(c2).length >= 1, 3000, 'both silent listeners to be offered the subscription');
    const [first, second] = [c1[0], c2[0]].sort((a, b) => a.at - b.at);
    assert.ok(first.at - t0 < 400, `the first listener was asked ${first.at - t0} ms after the subscription`);
    const gap = second.at - first.at;
    assert.ok(gap >= 400 && gap < 1500, `the second silent listener was asked ${gap} ms after the first (listenResponseTimeout is 500 ms)`);
    assert.deepEqual([first.match, first.isSubscribed, second.match, second.isSubscribed], [name, true, name, true]);

    // after both timeouts nobody is asked again
    await ds.sleep(700);
    assert.equal(c1.length, 1, 'the first silent listener was asked again');
    assert.equal(c2.length, 1, 'the second silent listener was asked again');

    const p3 = await ds.open(OPEN(), { username: 'p3' }, 'p3');
    clients.push(p3);
    const t3 = Date.now();
    const c3 = listener(p3, pattern, 'accept');
    await ds.waitFor(() => offers(c3).length >= 1, 3000, 'p3 to be offered the subscription');
    t.diagnostic(`first gap ${gap} ms; p3 offered ${c3[0].at - t3} ms after listening; silent listeners offered ${c1.length}+${c2.length} times in all`);
    assert.deepEqual([c3[0].match, c3[0].isSubscribed], [name, true]);

    await ds.sleep(150);
    sub.event.unsubscribe(name, noop);
    await ds.waitFor(() => removals(c3).length >= 1, 3000, 'p3 to be told the subscription was removed');
    await ds.sleep(100);
    assert.deepEqual(
      c3.map((c) => [c.match, c.isSubscribed]),
      [
        [name, true],
        [name, false],
      ]
    );
    assert.deepEqual(removals(c1), [], 'a silent listener was sent SR');
    assert.deepEqual(removals(c2), [], 'a silent listener was sent SR');
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});
