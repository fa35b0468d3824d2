'use strict';
// A node dies without a word (SIGKILL). This file starts a fourth node of its own on the shared
// Redis (tests/node/lib/cluster.js) and kills that one, so the shared nodes stay up.
// Config (scripts/cluster-tests.sh): clusterKeepAliveInterval 200, clusterActiveCheckInterval
// 200, clusterNodeInactiveTimeout 1500, rpcAckTimeout 1000, rpcTimeout 3000. The dead node's
// last stamp is at most one keep-alive interval old when it dies, so the survivors can declare
// it dead from about 1300 ms on, and should have by timeout + check interval (+ margin).
const test = require('node:test');
const assert = require('node:assert/strict');
const ds1 = require('../lib/ds');
const ds2 = require('../lib/ds2');
const cluster = require('../lib/cluster');
const ops = require('../lib/ops');

const INACTIVE = 1500;
const CHECK = 200;
const MARGIN = 1000;
const make = (client, name, data, timeoutMs = 6000) => ops.make(client, name, data, timeoutMs);
const { isPresenceAckTimeout, closeClients } = ops;

/** waits until `node` (an id like node-1a2b3c4d) has stamped a heartbeat in `cs:nodes` */
function waitStamped(node) {
  return cluster.waitRedis(cluster.sharedRedis().port, ['HEXISTS', 'cs:nodes', node], (r) => r === 1, 5000, `${node}'s first heartbeat in cs:nodes`);
}

test('a node killed with an RPC provider and logged-in users on it: within clusterNodeInactiveTimeout (+ margin) its users leave for presence subscribers on the other nodes (a user also logged in elsewhere stays), and its RPCs get NO_RPC_PROVIDER on the other nodes', { timeout: 40000 }, async (t) => {
  const [n1, n2, n3] = cluster.nodes();
  const prefix = ds1.uid('cdead');
  const victimUser = `${prefix}-victim`;
  const bothUser = `${prefix}-both`;
  const rpcName = `${prefix}/work`;
  const clients = [];
  let doomed;
  try {
    doomed = await cluster.startNode(cluster.sharedRedis().port, 'doomed');
    const [w1, w2] = await Promise.all([ds2.open(n1.http, { username: `${prefix}-w1` }, 'watcher@node1'), ds2.open(n2.http, { username: `${prefix}-w2` }, 'watcher@node2')]);
    clients.push(w1, w2);
    const events = { w1: [], w2: [] };
    for (const [k, w] of [
      ['w1', w1],
      ['w2', w2],
    ]) {
      w.presence.subscribe((username, loggedIn) => {
        if (username.startsWith(prefix) && !username.endsWith('-w1') && !username.endsWith('-w2')) events[k].push([username, loggedIn, Date.now()]);
      });
      await ds2.waitWire(w, 'U|A|S|U');
    }

    // on the doomed node: a 2.3.4 provider (logged in as the victim), and a user who is also
    // logged in on node 3
    const provider = await ds2.open(doomed.http, { username: victimUser }, 'provider-v2@doomed');
    const bothDoomed = await ds2.open(doomed.http, { username: bothUser }, 'both@doomed');
    const bothAlive = await ds2.open(n3.http, { username: bothUser }, 'both@node3');
    clients.push(provider, bothDoomed, bothAlive);
    const held = [];
    const p0 = provider.wire.length;
    provider.rpc.provide(rpcName, (data, response) => {
      if (data === 'hold') held.push(response); // acked by the library, never answered
      else response.send(`done-${data}`);
    });
    await ds2.waitWire(provider, `P|A|S|${rpcName}`, 3000, p0);
    await cluster.waitRedis(cluster.sharedRedis().port, ['SCARD', `cs:rpc:${rpcName}`], (r) => r === 1, 5000, 'the doomed node registered as a provider');
    // the survivors clean up (in Redis) only after a node they saw in `cs:nodes`: let it stamp
    // (the next test covers a node that dies before its first heartbeat)
    const [doomedId] = await cluster.redisCommand(cluster.sharedRedis().port, 'SMEMBERS', `cs:rpc:${rpcName}`);
    await waitStamped(doomedId);

    await ds2.waitFor(
      () => ['w1', 'w2'].every((k) => events[k].length >= 2),
      3000,
      () => `both watchers to see the two users join (${JSON.stringify(events)})`
    );
    for (const k of ['w1', 'w2']) {
      assert.deepEqual(events[k].map((e) => e.slice(0, 2)).sort(), [
        [bothUser, true],
        [victimUser, true],
      ]);
    }

    const [r1, r3] = await Promise.all([ds1.open(n1.tcp, { username: 'req-v1' }, 'req-v1@node1'), ds2.open(n3.http, { username: 'req-v2' }, 'req-v2@node3')]);
    clients.push(r1, r3);
    assert.deepEqual((await make(r1, rpcName, 'a')).args, [null, 'done-a']);
    assert.deepEqual((await make(r3, rpcName, 'b')).args, [null, 'done-b']);

    // a call in flight (acked, never answered) when the node dies
    const r1mark = r1.wire.length;
    const inFlight = make(r1, rpcName, 'hold', 8000);
    await ds2.waitFor(() => r1.wire.slice(r1mark).some((m) => m[0] === 'P' && m[1] === 'A'), 3000, 'the in-flight call to be acked');

    // kill
    const killedAt = Date.now();
    await doomed.kill('SIGKILL');
    const deadline = killedAt + INACTIVE + CHECK + MARGIN;

    // presence: the victim leaves (once, on both watchers); the user also on node 3 does not
    await ds2.waitFor(
      () => ['w1', 'w2'].every((k) => events[k].some((e) => e[0] === victimUser && e[1] === false)),
      deadline - Date.now() + 3000,
      () => `both watchers to see ${victimUser} leave (${JSON.stringify(events)})`
    );
    const leftAfter = ['w1', 'w2'].map((k) => events[k].find((e) => e[0] === victimUser && e[1] === false)[2] - killedAt);
    t.diagnostic(`PNL of the dead node's user after ${leftAfter.join(' / ')} ms (watchers on nodes 1 / 2)`);
    for (const ms of leftAfter) {
      assert.ok(ms >= 1000, `the user left ${ms} ms after the kill: before the node could be inactive`);
      assert.ok(ms <= INACTIVE + CHECK + MARGIN, `the user left ${ms} ms after the kill (limit ${INACTIVE + CHECK + MARGIN})`);
    }

    // RPC: the dead node's provider is forgotten (Redis), and requests on the other nodes get
    // NO_RPC_PROVIDER at once from the deadline on (before it, a request can still go to the
    // dead node and time out: ACK_TIMEOUT)
    try {
      await cluster.waitRedis(cluster.sharedRedis().port, ['SCARD', `cs:rpc:${rpcName}`], (r) => r === 0, Math.max(0, deadline - Date.now()) + 2000, "the dead node's provider removed from Redis");
    } catch (e) {
      t.diagnostic(`redis: ${JSON.stringify(await cluster.dumpRedis(cluster.sharedRedis().port, 'cs:[rnu]*'))}`);
      throw e;
    }
    const forgottenAfter = Date.now() - killedAt;
    t.diagnostic(`the dead node's provider was gone from Redis ${forgottenAfter} ms after the kill`);
    const attempts = [];
    let ok = false;
    for (;;) {
      const at = Date.now() - killedAt;
      const [a1, a3] = await Promise.all([make(r1, rpcName, 'after'), make(r3, rpcName, 'after')]);
      attempts.push(`${at}ms: v1 ${a1.args[0]} (${a1.ms}ms), v2 ${a3.args[0]} (${a3.ms}ms)`);
      ok = [a1, a3].every((a) => a.args[0] === 'NO_RPC_PROVIDER' && a.ms < 500);
      if (ok) break;
      if (at >= deadline - killedAt) break; // issued after the deadline and still wrong: fails
      await ds1.sleep(50);
    }
    t.diagnostic(`requests after the kill: ${attempts.join('; ')}`);
    assert.ok(ok, `requests on nodes 1 and 3 ${INACTIVE + CHECK + MARGIN} ms after the kill did not get NO_RPC_PROVIDER at once: ${attempts[attempts.length - 1]}`);

    // the call in flight ended with an error, not a hang
    const held1 = await inFlight;
    t.diagnostic(`in-flight call: ${JSON.stringify(held1.args)} after ${held1.ms} ms`);
    assert.ok(['NO_RPC_PROVIDER', 'RESPONSE_TIMEOUT'].includes(held1.args[0]), `the in-flight call ended with ${JSON.stringify(held1.args)}`);

    // the user logged in on node 3 too never left
    await ds1.sleep(300);
    for (const k of ['w1', 'w2']) {
      assert.deepEqual(events[k].filter((e) => e[0] === bothUser).map((e) => e[1]), [true], `watcher ${k}: ${bothUser} (still on node 3) left`);
      assert.deepEqual(events[k].filter((e) => e[0] === victimUser).map((e) => e[1]), [true, false], `watcher ${k}`);
    }
    for (const w of [w1, w2]) {
      const users = (await ops.getAll(w))[0].filter((u) => u.startsWith(prefix)).sort();
      assert.ok(users.includes(bothUser) && !users.includes(victimUser), `${w.label}: getAll ${JSON.stringify(users)}`);
    }
    for (const w of [w1, w2]) assert.deepEqual(ds2.errorsExcept(w, isPresenceAckTimeout), [], `${w.label} had errors`);
    for (const c of [r1, r3, bothAlive]) assert.deepEqual(c.errors, [], `${c.label} had errors`);
  } finally {
    await closeClients(clients, 500);
    if (doomed) await doomed.kill('SIGKILL');
  }
});

test('a node killed right after it started serving (before its first heartbeat, clusterKeepAliveInterval): its RPC provider and users are cleaned up too', { timeout: 30000 }, async (t) => {
  // The node's first stamp in `cs:nodes` can come up to one keep-alive interval after it
  // serves; clients can log in and provide RPCs (registered in Redis) before that.
  const [n1] = cluster.nodes();
  const port = cluster.sharedRedis().port;
  const prefix = ds1.uid('cearly');
  const victimUser = `${prefix}-victim`;
  const rpcName = `${prefix}/work`;
  const clients = [];
  let early;
  try {
    const watcher = await ds2.open(n1.http, { username: `${prefix}-w` }, 'watcher@node1');
    clients.push(watcher);
    const events = [];
    watcher.presence.subscribe((username, loggedIn) => {
      if (username === victimUser) events.push([loggedIn, Date.now()]);
    });
    await ds2.waitWire(watcher, 'U|A|S|U');
    const r1 = await ds1.open(n1.tcp, { username: 'req-v1' }, 'req-v1@node1');
    clients.push(r1);

    early = await cluster.startNode(port, 'early');
    const provider = await ds2.open(early.http, { username: victimUser }, 'provider-v2@early');
    clients.push(provider);
    const p0 = provider.wire.length;
    provider.rpc.provide(rpcName, (data, response) => response.send('ok'));
    await ds2.waitWire(provider, `P|A|S|${rpcName}`, 3000, p0);
    await cluster.waitRedis(port, ['SCARD', `cs:rpc:${rpcName}`], (r) => r === 1, 5000, 'the early node registered as a provider');
    await ds2.waitFor(() => events.length >= 1, 3000, `the watcher to see ${victimUser} join`);
    const [earlyId] = await cluster.redisCommand(port, 'SMEMBERS', `cs:rpc:${rpcName}`);
    const stamped = (await cluster.redisCommand(port, 'HEXISTS', 'cs:nodes', earlyId)) === 1;
    const killedAt = Date.now();
    await early.kill('SIGKILL');
    t.diagnostic(`killed ${killedAt - early.startedAt} ms after it served; its heartbeat was ${stamped ? 'already' : 'not yet'} in cs:nodes`);
    const deadline = killedAt + INACTIVE + CHECK + MARGIN;

    await ds2.waitFor(() => events.some((e) => e[0] === false), deadline - Date.now() + 3000, `the watcher to see ${victimUser} leave`);
    t.diagnostic(`PNL after ${events.find((e) => e[0] === false)[1] - killedAt} ms`);
    const left = Math.max(0, deadline - Date.now());
    await ds1.sleep(left);
    const res = await make(r1, rpcName, 'after');
    t.diagnostic(`request ${Date.now() - killedAt - res.ms} ms after the kill: ${JSON.stringify(res.args)} after ${res.ms} ms`);
    const redisState = await cluster.dumpRedis(port, `cs:*${prefix}*`);
    assert.deepEqual(res.args, ['NO_RPC_PROVIDER'], `a request ${deadline - killedAt} ms after the kill still went to the dead node (Redis: ${JSON.stringify(redisState)})`);
    assert.equal(await cluster.redisCommand(port, 'SCARD', `cs:rpc:${rpcName}`), 0, "the dead node's provider is still in Redis");
  } finally {
    await closeClients(clients, 500);
    if (early) await early.kill('SIGKILL');
  }
});
