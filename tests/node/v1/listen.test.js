'use strict';
// Event listening with the real deepstream.io-client-js 1.1.1 (TCP).
//
// 1.1.1 API (src/utils/listener.js): client.event.listen(pattern, callback) where
//   callback(match, true, response)  on `E|SP|pattern|match` (response.accept() / response.reject()
//                                    send `E|LA` / `E|LR`; the library never answers by itself)
//   callback(match, false)           on `E|SR|pattern|match` (only two arguments)
// Reference captures: captures/v1/lib-event-listen-accept.log, lib-event-listen-existing-subscription.log,
// lib-event-listen-reject-then-second-provider.log, raw-listen-wire.log.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds = require('../lib/ds');

const OPEN = () => ds.env('DS_OPEN_URL');
const noop = () => {};

/** listens on pattern; answers every offer with `answer` ('accept' | 'reject' | null = silent) */
function listener(client, pattern, answer) {
  const calls = []; // {match, isSubscribed, nargs, at}
  client.event.listen(pattern, function (match, isSubscribed, response) {
    calls.push({ match, isSubscribed, nargs: arguments.length, hasResponse: !!response, at: Date.now() });
    if (isSubscribed && answer) response[answer]();
  });
  return calls;
}
const offers = (calls) => calls.filter((c) => c.isSubscribed === true);
const removals = (calls) => calls.filter((c) => c.isSubscribed === false);

test('listen accept: provider is offered a new subscription, accepts, and is told when it goes away', { timeout: 15000 }, async () => {
  const prefix = ds.uid('ls-acc');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/sport`;
  const clients = [];
  try {
    const [provider, sub] = await Promise.all([
      ds.open(OPEN(), { username: 'provider' }, 'provider'),
      ds.open(OPEN(), { username: 'bob' }, 'bob'),
    ]);
    clients.push(provider, sub);
    const calls = listener(provider, pattern, 'accept');
    await ds.waitWire(provider, `E|A|L|${pattern}`);
    assert.deepEqual(calls, [], 'offered something before any subscription');

    const cb = noop;
    sub.event.subscribe(name, cb);
    await ds.waitFor(() => calls.length >= 1, 3000, 'the provider to be offered the subscription');
    assert.equal(calls[0].match, name);
    assert.equal(calls[0].isSubscribed, true);
    assert.equal(calls[0].nargs, 3);
    assert.equal(calls[0].hasResponse, true);
    await ds.waitWire(sub, `E|A|S|${name}`);

    // let the accept reach the server before the subscriber leaves (see PROTOCOL.md 3.3: if the
    // last subscriber leaves before LA is processed, the provider never gets SR)
    await ds.sleep(150);
    sub.event.unsubscribe(name, cb);
    await ds.waitFor(() => calls.length >= 2, 3000, 'the provider to be told the subscription was removed');
    assert.deepEqual(
      calls.map((c) => [c.match, c.isSubscribed, c.nargs]),
      [
        [name, true, 3],
        [name, false, 2],
      ]
    );
    assert.ok(provider.wire.some((m) => m.join('|') === `E|SR|${pattern}|${name}`));

    provider.event.unlisten(pattern);
    await ds.waitWire(provider, `E|A|UL|${pattern}`);
    // nothing more after unlisten, even when the name is subscribed again
    sub.event.subscribe(name, cb);
    await ds.waitWire(sub, `E|A|S|${name}`, 3000, sub.wire.length);
    await ds.sleep(200);
    assert.equal(calls.length, 2);
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('listen existing subscription: a new listener is offered names that already have subscribers', { timeout: 15000 }, async () => {
  const prefix = ds.uid('ls-pre');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/a`;
  const clients = [];
  try {
    const [sub, provider] = await Promise.all([
      ds.open(OPEN(), { username: 'bob' }, 'bob'),
      ds.open(OPEN(), { username: 'provider' }, 'provider'),
    ]);
    clients.push(sub, provider);
    sub.event.subscribe(name, noop);
    await ds.waitWire(sub, `E|A|S|${name}`);
    await ds.sleep(100);

    const calls = listener(provider, pattern, 'accept');
    await ds.waitWire(provider, `E|A|L|${pattern}`);
    await ds.waitFor(() => calls.length >= 1, 3000, 'the provider to be offered the existing subscription');
    assert.deepEqual(
      calls.map((c) => [c.match, c.isSubscribed]),
      [[name, true]]
    );
    await ds.sleep(150);

    // the last subscriber disconnects: the provider is told
    await ds.close(sub);
    await ds.waitFor(() => calls.length >= 2, 3000, 'the provider to be told the subscriber left');
    assert.deepEqual(
      calls.map((c) => [c.match, c.isSubscribed]),
      [
        [name, true],
        [name, false],
      ]
    );
    assert.deepEqual(provider.errors, []);
    assert.deepEqual(sub.errors, []);
  } finally {
    await ds.closeAll(clients);
  }
});

test('listen reject then second provider: p1 rejects, p2 starts listening later and gets it', { timeout: 15000 }, async () => {
  const prefix = ds.uid('ls-rej');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/x`;
  const clients = [];
  try {
    const [p1, sub] = await Promise.all([
      ds.open(OPEN(), { username: 'p1' }, 'p1'),
      ds.open(OPEN(), { username: 'bob' }, 'bob'),
    ]);
    clients.push(p1, sub);
    const c1 = listener(p1, pattern, 'reject');
    await ds.waitWire(p1, `E|A|L|${pattern}`);

    sub.event.subscribe(name, noop);
    await ds.waitFor(() => c1.length >= 1, 3000, 'p1 to be offered the subscription');
    assert.deepEqual([c1[0].match, c1[0].isSubscribed], [name, true]);
    await ds.waitWire(sub, `E|A|S|${name}`);
    // as in the capture, the second provider arrives well after the first offer was rejected
    await ds.sleep(700);
    assert.equal(offers(c1).length, 1, 'p1 was offered the name again without a new listener');

    const p2 = await ds.open(OPEN(), { username: 'p2' }, 'p2');
    clients.push(p2);
    const t0 = Date.now();
    const c2 = listener(p2, pattern, 'accept');
    await ds.waitFor(() => offers(c2).length >= 1, 3000, 'p2 to be offered the subscription');
    const took = Date.now() - t0;
    assert.deepEqual([c2[0].match, c2[0].isSubscribed], [name, true]);
    // the real 1.1.1 server asks p1 again first (and, due to its timeout bookkeeping, only moves
    // on to p2 after listenResponseTimeout): allow for that
    assert.ok(took < 2500, `p2 was offered the name only after ${took} ms`);

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
    assert.deepEqual(removals(c1), [], 'the rejecting provider was sent SR');
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds.closeAll(clients);
  }
});

test('listen timeout: a listener that never answers is skipped after listenResponseTimeout', { timeout: 15000 }, async () => {
  const prefix = ds.uid('ls-tmo');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/x`;
  const clients = [];
  try {
    const [p1, p2, sub] = await Promise.all([
      ds.open(OPEN(), { username: 'silent' }, 'p1-silent'),
      ds.open(OPEN(), { username: 'p2' }, 'p2'),
      ds.open(OPEN(), { username: 'bob' }, 'bob'),
    ]);
    clients.push(p1, p2, sub);
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
