'use strict';
// Listening across nodes, with the real clients: deepstream.io-client-js 1.1.1 over TCP and
// 2.3.4 over WebSocket. One node of the cluster leads listening (src/cluster/listen.rs); these
// tests do not care which, except the last, which kills the leader of a cluster of its own.
//
// listen(pattern, callback): callback(match, true, response) on SP (response.accept() /
// response.reject() send LA / LR), callback(match, false) on SR. Same API in both libraries,
// for events and records. Config (scripts/cluster-tests.sh): listenResponseTimeout 500,
// clusterKeepAliveInterval 200, clusterActiveCheckInterval 200, clusterNodeInactiveTimeout 1500.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds1 = require('../lib/ds');
const ds2 = require('../lib/ds2');
const cluster = require('../lib/cluster');
const { openEach } = require('../lib/ops');

const INACTIVE = 1500;
const MARGIN = 2500;
const noop = () => {};

/** listens on pattern (topic 'event' | 'record'); answers every offer with `answer` */
function listener(client, topic, pattern, answer) {
  const calls = [];
  client[topic].listen(pattern, function (match, isSubscribed, response) {
    calls.push({ match, isSubscribed });
    if (isSubscribed && answer) response[answer]();
  });
  return calls;
}
const offers = (calls) => calls.filter((c) => c.isSubscribed === true).length;
const removals = (calls) => calls.filter((c) => c.isSubscribed === false).length;
const shTexts = (client, name, from = 0) =>
  client.wire
    .slice(from)
    .filter((m) => m[0] === 'R' && m[1] === 'SH' && m[2] === name)
    .map((m) => m[3]);

test('events: listeners on two nodes, subscribers on two others: exactly one provider in the cluster; it is told SR only when the last subscriber anywhere leaves', { timeout: 30000 }, async () => {
  const [n1, n2, n3] = cluster.nodes();
  const prefix = ds1.uid('clsn');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/price`;
  const clients = [];
  try {
    const [l1, l2, s3, s1] = await openEach(clients, [
      [ds1, n1.tcp, 'l1', 'listener-v1@node1'],
      [ds2, n2.http, 'l2', 'listener-v2@node2'],
      [ds1, n3.tcp, 's3', 'sub-v1@node3'],
      [ds2, n1.http, 's1', 'sub-v2@node1'],
    ]);
    const c1 = listener(l1, 'event', pattern, 'accept');
    const c2 = listener(l2, 'event', pattern, 'accept');
    await ds1.waitWire(l1, `E|A|L|${pattern}`);
    await ds2.waitWire(l2, `E|A|L|${pattern}`);

    s3.event.subscribe(name, noop);
    await ds1.waitFor(() => offers(c1) + offers(c2) >= 1, 5000, 'one listener to be offered the name');
    // longer than listenResponseTimeout: a second offer would have come by now
    await ds1.sleep(800);
    assert.equal(offers(c1) + offers(c2), 1, `exactly one offer in the cluster: ${JSON.stringify({ c1, c2 })}`);
    const [provider, providerCalls, otherCalls] = offers(c1) ? [l1, c1, c2] : [l2, c2, c1];

    // a second subscriber on another node: still one provider, no SR
    s1.event.subscribe(name, noop);
    await ds2.waitWire(s1, `E|A|S|${name}`);
    await ds1.sleep(400);
    s3.event.unsubscribe(name, noop);
    await ds1.waitWire(s3, `E|A|US|${name}`);
    await ds1.sleep(400);
    assert.equal(removals(providerCalls), 0, 'SR while a subscriber on node 1 remains');
    assert.equal(offers(c1) + offers(c2), 1);

    // the last subscriber anywhere leaves: SR to the provider, nothing to the other listener
    s1.event.unsubscribe(name, noop);
    await ds1.waitFor(() => removals(providerCalls) === 1, 5000, `${provider.label} to be told SR`);
    assert.ok(provider.wire.some((m) => m.join('|') === `E|SR|${pattern}|${name}`));
    await ds1.sleep(300);
    assert.deepEqual(otherCalls, []);
    assert.deepEqual(providerCalls, [
      { match: name, isSubscribed: true },
      { match: name, isSubscribed: false },
    ]);
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds1.closeAll(clients);
  }
});

test('records: a reject on node 1 moves on to the listener on node 2; subscribers on nodes 1 and 3 see SH T, then SH F when the provider disconnects, and the rejecting listener is asked again', { timeout: 30000 }, async () => {
  const [n1, n2, n3] = cluster.nodes();
  const prefix = ds1.uid('clsr');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/book`;
  const clients = [];
  try {
    const [rejecting, accepting, s3, s1] = await openEach(clients, [
      [ds1, n1.tcp, 'rej', 'rejecting-v1@node1'],
      [ds2, n2.http, 'acc', 'accepting-v2@node2'],
      [ds2, n3.http, 's3', 'sub-v2@node3'],
      [ds2, n1.http, 's1', 'sub-v2@node1'],
    ]);
    const cRej = listener(rejecting, 'record', pattern, 'reject');
    await ds1.waitWire(rejecting, `R|A|L|${pattern}`);
    await ds1.sleep(300); // the leader hears the rejecting listener first
    const cAcc = listener(accepting, 'record', pattern, 'accept');
    await ds2.waitWire(accepting, `R|A|L|${pattern}`);
    await ds1.sleep(300);

    const r3 = s3.record.getRecord(name);
    const r1 = s1.record.getRecord(name);
    await ds1.waitFor(() => offers(cAcc) === 1, 5000, () => `the accepting listener to be offered the record (${JSON.stringify({ cRej, cAcc })})`);
    assert.equal(offers(cRej), 1, 'the rejecting listener was asked first');
    await ds1.waitFor(() => shTexts(s3, name).includes('T') && shTexts(s1, name).includes('T'), 5000, () => `SH T on nodes 3 and 1 (${JSON.stringify([shTexts(s3, name), shTexts(s1, name)])})`);
    assert.equal(r3.hasProvider, true);
    assert.equal(r1.hasProvider, true);

    // the provider disconnects: SH F everywhere, and discovery starts again
    const before = [s3.wire.length, s1.wire.length];
    await ds2.close(accepting);
    await ds1.waitFor(() => shTexts(s3, name, before[0]).includes('F') && shTexts(s1, name, before[1]).includes('F'), 5000, 'SH F on nodes 3 and 1');
    await ds1.waitFor(() => offers(cRej) === 2, 5000, 'the rejecting listener to be asked again');
    assert.equal(r3.hasProvider, false);
    for (const c of [rejecting, s3, s1]) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds1.closeAll(clients);
  }
});

test("the provider's node is killed: within clusterNodeInactiveTimeout (+ margin) a listener on another node takes over and subscribers see SH F then SH T", { timeout: 40000 }, async () => {
  const [n1, n2] = cluster.nodes();
  const prefix = ds1.uid('clsk');
  const pattern = `${prefix}/.*`;
  const name = `${prefix}/quote`;
  const clients = [];
  let doomed;
  try {
    doomed = await cluster.startNode(cluster.sharedRedis().port, 'listen-doomed');
    const [lDoomed, sub, l1] = await Promise.all([
      ds2.open(doomed.http, { username: 'ld' }, 'listener-v2@doomed'),
      ds2.open(n2.http, { username: 'sub' }, 'sub-v2@node2'),
      ds1.open(n1.tcp, { username: 'l1' }, 'listener-v1@node1'),
    ]);
    clients.push(sub, l1);
    const cDoomed = listener(lDoomed, 'record', pattern, 'accept');
    await ds2.waitWire(lDoomed, `R|A|L|${pattern}`);
    await ds1.sleep(300);
    sub.record.getRecord(name);
    await ds1.waitFor(() => offers(cDoomed) === 1, 5000, 'the listener on the doomed node to be offered the record');
    await ds1.waitFor(() => shTexts(sub, name).includes('T'), 5000, 'SH T on node 2');

    const c1 = listener(l1, 'record', pattern, 'accept');
    await ds1.waitWire(l1, `R|A|L|${pattern}`);
    await ds1.sleep(600);
    assert.equal(offers(c1), 0, 'a provider exists: the new listener is not offered the name');

    const from = sub.wire.length;
    const killedAt = Date.now();
    await doomed.kill('SIGKILL');
    await ds1.waitFor(() => offers(c1) === 1, INACTIVE + MARGIN, 'the listener on node 1 to take over');
    const tookMs = Date.now() - killedAt;
    await ds1.waitFor(() => shTexts(sub, name, from).join('') === 'FT', 2000, () => `SH F then T on node 2 (${JSON.stringify(shTexts(sub, name, from))})`);
    assert.ok(tookMs < INACTIVE + MARGIN, `took ${tookMs} ms`);
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds1.closeAll(clients);
    if (doomed) await doomed.kill('SIGKILL');
  }
});

test('the listen leader is killed: the surviving node takes the lead, its provider is revoked once and offered the name again, and SR still follows the last unsubscribe', { timeout: 40000 }, async () => {
  const redis = await cluster.startRedis('listen-redis');
  const clients = [];
  const started = [];
  try {
    const leaderNode = await cluster.startNode(redis.port, 'listen-leader');
    started.push(leaderNode);
    await cluster.waitRedis(redis.port, ['HGET', 'cs:listen-leader', 'node'], (r) => typeof r === 'string' && r.length > 0, 5000, 'a listen leader');
    const [leaderId] = await cluster.redisCommand(redis.port, 'HKEYS', 'cs:nodes');
    assert.equal(await cluster.redisCommand(redis.port, 'HGET', 'cs:listen-leader', 'node'), leaderId, 'the first node leads');
    const survivor = await cluster.startNode(redis.port, 'listen-survivor');
    started.push(survivor);
    const leaderGauge = (node) => cluster.metric(node.http, 'corestream_cluster_listen_leader ');
    await cluster.eventually(async () => (await leaderGauge(leaderNode)) === 1, 3000, 'the leader to say so in /metrics');
    assert.equal(await leaderGauge(survivor), 0);

    const prefix = ds1.uid('clsl');
    const pattern = `${prefix}/.*`;
    const name = `${prefix}/feed`;
    const [l, s] = await openEach(clients, [
      [ds2, survivor.http, 'l', 'listener-v2@survivor'],
      [ds1, survivor.tcp, 's', 'sub-v1@survivor'],
    ]);
    const calls = listener(l, 'event', pattern, 'accept');
    await ds2.waitWire(l, `E|A|L|${pattern}`);
    s.event.subscribe(name, noop);
    await ds1.waitFor(() => offers(calls) === 1, 5000, 'the listener to be offered the name by the leader on the other node');

    await leaderNode.kill('SIGKILL');
    await cluster.waitRedis(redis.port, ['HGET', 'cs:listen-leader', 'node'], (r) => r && r !== leaderId, INACTIVE + MARGIN, 'the survivor to take the lead');
    await cluster.eventually(async () => (await leaderGauge(survivor)) === 1, 3000, 'the survivor to say it leads in /metrics');
    await ds1.waitFor(() => offers(calls) === 2, 3000, () => `the provider to be offered the name again (${JSON.stringify(calls)})`);
    assert.deepEqual(
      calls.map((c) => c.isSubscribed),
      [true, false, true],
      'revoked once, then offered again'
    );
    s.event.unsubscribe(name, noop);
    await ds1.waitFor(() => removals(calls) === 2, 3000, 'SR after the last unsubscribe');
    for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await ds1.closeAll(clients);
    for (const node of started) await node.kill('SIGKILL');
    await redis.kill('SIGKILL');
  }
});
