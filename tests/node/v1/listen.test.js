'use strict';
// Event listening with the real deepstream.io-client-js 1.1.1 (TCP): the suite of
// tests/node/suite/listen.js in the 1.x dialect, and the listen timeout as the reference server does it.
const test = require('node:test');
const assert = require('node:assert/strict');
const suite = require('../suite/listen');
const dialect = require('../lib/dialect').v1;

suite(dialect);

const { ds, OPEN } = dialect;
const { noop, listener, offers, removals } = suite;

test('listen timeout: a listener that never answers is skipped after listenResponseTimeout', { timeout: 15000 }, async () => {
  const prefix = ds.uid('ls-tmo');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/x`;
  const clients = [];
  try {
    const [p1, p2, sub] = await ds.openAll(OPEN(), ['p1-silent', 'p2', 'bob'], clients);
    // 1.1.1 never answers an offer by itself: a callback that ignores `response` is silent
    const c1 = listener(p1, pattern, null);
    await ds.waitWire(p1, `E|A|L|${pattern}`);
    await ds.sleep(50);
    const c2 = listener(p2, pattern, 'accept');
    await ds.waitWire(p2, `E|A|L|${pattern}`);

    const t0 = Date.now();
    sub.event.subscribe(name, noop);
    await ds.waitFor(() => offers(c2).length >= 1, 3000, 'p2 to be offered the subscription');
    assert.deepEqual([c2[0].match, c2[0].isSubscribed], [name, true]);
    if (offers(c1).length > 0) {
      // p1 (registered first) was asked first: p2 must only be asked after the timeout
      const gap = c2[0].at - c1[0].at;
      assert.ok(gap >= 400, `p2 was asked ${gap} ms after the silent p1 (listenResponseTimeout is 500 ms)`);
    }
    assert.ok(c2[0].at - t0 < 2000, 'p2 was offered the name too late');

    await ds.sleep(150);
    sub.event.unsubscribe(name, noop);
    await ds.waitFor(() => removals(c2).length >= 1, 3000, 'p2 to be told the subscription was removed');
    await ds.sleep(100);
    assert.deepEqual(
      c2.map((c) => [c.match, c.isSubscribed]),
      [
        [name, true],
        [name, false],
      ]
    );
    assert.deepEqual(removals(c1), [], 'the silent listener was sent SR');
    assert.ok(offers(c1).length <= 1, 'the silent listener was offered the name more than once');
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});
