'use strict';
// RPC across the three nodes of scripts/cluster-tests.sh: a 2.3.4 provider on node 2, a 1.1.1
// requester on node 1 and a 2.3.4 requester on node 3; raw WebSocket providers where the library
// can't misbehave on purpose (never ack). Server timeouts: rpcAckTimeout 1000, rpcTimeout 3000
// (the clients' own are longer, so the server's errors are what the callers see).
//
// A node registers its first provider of a name in Redis (`cs:rpc:<name>`, src/cluster/rpc.rs)
// after the `P|A|S` ack; the tests wait for that registration before asking from another node.
// Library behaviours relied on: see tests/node/v1/rpc.test.js and tests/node/v2/rpc.test.js.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const ds1 = require('../lib/ds');
const ds2 = require('../lib/ds2');
const rawws = require('../lib/raw-ws');
const cluster = require('../lib/cluster');
const ops = require('../lib/ops');

const RPC_ACK_TIMEOUT = 1000;
const RPC_TIMEOUT = 3000;
const make = (client, name, data, timeoutMs = 6000) => ops.make(client, name, data, timeoutMs);
const { rpcTexts, provide } = ops;

/** waits until `count` nodes provide `name` according to Redis */
function providedBy(name, count) {
  return cluster.waitRedis(cluster.sharedRedis().port, ['SCARD', `cs:rpc:${name}`], (r) => r === count, 5000, `${count} node(s) registered as providers of ${name}`);
}

async function requesters() {
  const [n1, , n3] = cluster.nodes();
  const [r1, r3] = await Promise.all([ds1.open(n1.tcp, { username: 'req-v1' }, 'req-v1@node1'), ds2.open(n3.http, { username: 'req-v2' }, 'req-v2@node3')]);
  return [r1, r3];
}

const closeAll = ops.closeClients;

describe('rpc across nodes', { concurrency: true }, () => {
  it('make/response: a 2.3.4 provider on node 2 answers a 1.1.1 requester on node 1 and a 2.3.4 requester on node 3, each in its own ack dialect; typed data round-trips', { timeout: 20000 }, async () => {
    const [, n2] = cluster.nodes();
    const prefix = ds1.uid('crpc');
    const add = `${prefix}/add`;
    const echo = `${prefix}/echo`;
    const clients = [];
    try {
      const provider = await ds2.open(n2.http, { username: 'provider' }, 'provider-v2@node2');
      clients.push(provider);
      const [r1, r3] = await requesters();
      clients.push(r1, r3);
      const asked = [];
      await provide(provider, add, (data, response) => {
        asked.push(data);
        response.send(data.a + data.b);
      });
      await provide(provider, echo, (data, response) => response.send(data));
      await Promise.all([providedBy(add, 1), providedBy(echo, 1)]);

      // 1.1.1 on node 1: the 1.x ack `P|A|<name>|<cid>`
      let c0 = r1.wire.length;
      assert.deepEqual((await make(r1, add, { a: 1, b: 2 })).args, [null, 3]);
      let texts = rpcTexts(r1, c0);
      let cid = texts[0] && texts[0].split('|')[3];
      assert.deepEqual(texts, [`P|A|${add}|${cid}`, `P|RES|${add}|${cid}|N3`]);
      // 2.3.4 on node 3: the 2.x ack `P|A|REQ|<name>|<cid>`
      c0 = r3.wire.length;
      assert.deepEqual((await make(r3, add, { a: 'x', b: 'y' })).args, [null, 'xy']);
      texts = rpcTexts(r3, c0);
      cid = texts[0] && texts[0].split('|')[4];
      assert.deepEqual(texts, [`P|A|REQ|${add}|${cid}`, `P|RES|${add}|${cid}|Sxy`]);
      assert.deepEqual(asked, [
        { a: 1, b: 2 },
        { a: 'x', b: 'y' },
      ]);

      const values = [{ a: [1, { b: null }], s: 'x|y' }, 'hello', '', 'unicode \u00e9\u2713', 42.5, -1, 0, true, false, null, [1, 'two']];
      for (const r of [r1, r3]) {
        const results = await Promise.all(values.map((v) => make(r, echo, v)));
        results.forEach((res, i) => assert.deepEqual(res.args, [null, values[i]], `${r.label}: echo of ${JSON.stringify(values[i])}`));
        results.forEach((res) => assert.equal(res.out.calls, 1));
      }
      for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    } finally {
      await closeAll(clients);
    }
  });

  it("provider error: response.error('boom') on node 2 reaches both requesters as err 'boom', without an ack", { timeout: 20000 }, async () => {
    const [, n2] = cluster.nodes();
    const name = `${ds1.uid('crpc-err')}/fail`;
    const clients = [];
    try {
      const provider = await ds2.open(n2.http, { username: 'provider' }, 'provider-v2@node2');
      clients.push(provider);
      const [r1, r3] = await requesters();
      clients.push(r1, r3);
      await provide(provider, name, (data, response) => response.error('boom'));
      await providedBy(name, 1);
      for (const r of [r1, r3]) {
        const c0 = r.wire.length;
        const res = await make(r, name, null);
        assert.deepEqual(res.args, ['boom'], r.label);
        const texts = rpcTexts(r, c0);
        assert.equal(texts.length, 1, `${r.label}: ${JSON.stringify(texts)}`);
        assert.match(texts[0], new RegExp(`^P\\|E\\|boom\\|${name.replace(/[/-]/g, '\\$&')}\\|[^|]+$`));
        await ds1.sleep(100);
        assert.equal(res.out.calls, 1);
      }
      for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    } finally {
      await closeAll(clients);
    }
  });

  /** providers p2 (node 2) and p3 (node 3) of a new name; the first one asked rejects, the other answers */
  async function rerouteSetup(clients) {
    const [, n2, n3] = cluster.nodes();
    const name = `${ds1.uid('crpc-rr')}/rr`;
    const [p2, p3] = await Promise.all([ds2.open(n2.http, { username: 'p2' }, 'p2-v2@node2'), ds2.open(n3.http, { username: 'p3' }, 'p3-v2@node3')]);
    clients.push(p2, p3);
    const state = {};
    await provide(p2, name, ops.rerouteHandler(state, 'p2'));
    await provide(p3, name, ops.rerouteHandler(state, 'p3'));
    await providedBy(name, 2);
    return { name, state };
  }

  /** N requests from r: each must be rejected by one provider and answered by the other */
  async function rerouteRun(t, r, name, state, n) {
    const orders = [];
    const failures = [];
    for (let k = 0; k < n; k++) {
      state[k] = { rejectedBy: [], answeredBy: [] };
      const res = await make(r, name, { k });
      const st = state[k];
      orders.push(`${st.rejectedBy[0] || '-'}>${st.answeredBy[0] || res.args[0]}`);
      if (st.rejectedBy.length !== 1 || st.answeredBy.length !== 1 || st.rejectedBy[0] === st.answeredBy[0] || res.args[0] !== null || res.args[1] !== `from-${st.answeredBy[0]}`) {
        failures.push(`request ${k}: ${JSON.stringify(st)} -> ${JSON.stringify(res.args)}`);
      }
    }
    t.diagnostic(`${r.label} (rejected>answered): ${orders.join(' ')}`);
    assert.deepEqual(failures, [], `${r.label}: requests not rerouted to the provider on the other node`);
    // the requester saw only the answering provider's ack and response
    const texts = rpcTexts(r);
    assert.equal(texts.length, 2 * n, `${r.label}: ${JSON.stringify(texts)}`);
    assert.ok(texts.every((x) => /^P\|(A|RES)\|/.test(x)), `${r.label}: ${JSON.stringify(texts)}`);
  }

  it('reject -> reroute: providers on nodes 2 and 3; whichever one a 1.1.1 requester on node 1 reaches first rejects, the one on the other node answers', { timeout: 30000 }, async (t) => {
    const clients = [];
    try {
      const { name, state } = await rerouteSetup(clients);
      const [n1] = cluster.nodes();
      const r1 = await ds1.open(n1.tcp, { username: 'req-v1' }, 'req-v1@node1');
      clients.push(r1);
      await rerouteRun(t, r1, name, state, 6);
      for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    } finally {
      await closeAll(clients);
    }
  });

  it('reject -> reroute: a 2.3.4 requester on node 3, whose local provider rejects, is answered by the provider on node 2', { timeout: 30000 }, async (t) => {
    const clients = [];
    try {
      const { name, state } = await rerouteSetup(clients);
      const [, , n3] = cluster.nodes();
      const r3 = await ds2.open(n3.http, { username: 'req-v2' }, 'req-v2@node3');
      clients.push(r3);
      await rerouteRun(t, r3, name, state, 4);
      for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    } finally {
      await closeAll(clients);
    }
  });

  it("no provider: a name nobody provides anywhere -> err 'NO_RPC_PROVIDER' at once on both requesters; and after the only (remote) provider unprovides", { timeout: 20000 }, async () => {
    const [, n2] = cluster.nodes();
    const prefix = ds1.uid('crpc-none');
    const none = `${prefix}/none`;
    const gone = `${prefix}/gone`;
    const clients = [];
    try {
      const [r1, r3] = await requesters();
      clients.push(r1, r3);
      for (const r of [r1, r3]) {
        const c0 = r.wire.length;
        const res = await make(r, none, 1);
        assert.deepEqual(res.args, ['NO_RPC_PROVIDER'], r.label);
        assert.ok(res.ms < RPC_ACK_TIMEOUT, `${r.label}: NO_RPC_PROVIDER took ${res.ms} ms`);
        const texts = rpcTexts(r, c0);
        assert.equal(texts.length, 1);
        assert.ok(texts[0].startsWith(`P|E|NO_RPC_PROVIDER|${none}|`), texts[0]);
      }
      const provider = await ds2.open(n2.http, { username: 'provider' }, 'provider-v2@node2');
      clients.push(provider);
      await provide(provider, gone, (data, response) => response.send('here'));
      await providedBy(gone, 1);
      assert.deepEqual((await make(r1, gone, 1)).args, [null, 'here']);
      assert.deepEqual((await make(r3, gone, 1)).args, [null, 'here']);
      const p0 = provider.wire.length;
      provider.rpc.unprovide(gone);
      await ds2.waitWire(provider, `P|A|US|${gone}`, 3000, p0);
      await providedBy(gone, 0);
      for (const r of [r1, r3]) {
        const res = await make(r, gone, 2);
        assert.deepEqual(res.args, ['NO_RPC_PROVIDER'], r.label);
        assert.ok(res.ms < RPC_ACK_TIMEOUT, `${r.label}: NO_RPC_PROVIDER took ${res.ms} ms`);
      }
      assert.deepEqual(rpcTexts(provider, p0), [`P|A|US|${gone}`], 'the provider was asked after unproviding');
      for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    } finally {
      await closeAll(clients);
    }
  });

  it("ack timeout: a raw provider on node 2 that never acks -> err 'ACK_TIMEOUT' after about rpcAckTimeout on nodes 1 and 3, and nothing after it", { timeout: 20000 }, async () => {
    const [, n2] = cluster.nodes();
    const name = `${ds1.uid('crpc-ack')}/slow`;
    const clients = [];
    let prov;
    try {
      prov = await rawws.connect(n2.http, { auth: { username: 'rawprov' }, label: 'rawprov-ws@node2' });
      let from = prov.received.length;
      prov.send('P', 'S', name);
      await prov.waitForMessage(['P', 'A', 'S', name], 3000, from);
      await providedBy(name, 1);
      const [r1, r3] = await requesters();
      clients.push(r1, r3);
      const marks = [r1.wire.length, r3.wire.length];
      from = prov.received.length;
      const t0 = Date.now();
      const [res1, res3] = await Promise.all([make(r1, name, 1), make(r3, name, 3)]);
      for (const [r, res] of [
        [r1, res1],
        [r3, res3],
      ]) {
        assert.deepEqual(res.args, ['ACK_TIMEOUT'], r.label);
        assert.ok(res.ms >= RPC_ACK_TIMEOUT - 100 && res.ms < RPC_ACK_TIMEOUT + 1000, `${r.label}: ACK_TIMEOUT after ${res.ms} ms (rpcAckTimeout is ${RPC_ACK_TIMEOUT})`);
      }
      const reqs = prov.received.slice(from).filter((m) => m[0] === 'P' && m[1] === 'REQ');
      assert.equal(reqs.length, 2, JSON.stringify(prov.texts(from)));
      const cids = {};
      for (const m of reqs) {
        assert.equal(m[2], name);
        cids[m[4]] = m[3];
      }
      assert.deepEqual(Object.keys(cids).sort(), ['N1', 'N3']);
      // the calls are over: no RESPONSE_TIMEOUT (or anything else) follows
      await ds1.sleep(Math.max(0, RPC_TIMEOUT + 300 - (Date.now() - t0)));
      assert.deepEqual(rpcTexts(r1, marks[0]), [`P|E|ACK_TIMEOUT|${name}|${cids.N1}`]);
      assert.deepEqual(rpcTexts(r3, marks[1]), [`P|E|ACK_TIMEOUT|${name}|${cids.N3}`]);
      assert.equal(res1.out.calls, 1);
      assert.equal(res3.out.calls, 1);
      // a late ack from the provider reaches nobody
      const late = [r1.wire.length, r3.wire.length];
      prov.send('P', 'A', 'REQ', name, cids.N1);
      await ds1.sleep(300);
      assert.deepEqual(rpcTexts(r1, late[0]), []);
      assert.deepEqual(rpcTexts(r3, late[1]), []);
      for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    } finally {
      await closeAll(clients);
      if (prov) await prov.close();
    }
  });

  it("response timeout: a provider on node 2 that acks but never answers -> err 'RESPONSE_TIMEOUT' after about rpcTimeout on node 1", { timeout: 20000 }, async () => {
    const [, n2] = cluster.nodes();
    const name = `${ds1.uid('crpc-resp')}/mute`;
    const clients = [];
    try {
      const provider = await ds2.open(n2.http, { username: 'provider' }, 'provider-v2@node2');
      clients.push(provider);
      const asked = [];
      await provide(provider, name, (data) => asked.push(data)); // auto-acks, never responds
      await providedBy(name, 1);
      const [r1, r3] = await requesters();
      clients.push(r1, r3);
      const c0 = r1.wire.length;
      const res = await make(r1, name, { q: 1 }, 8000);
      assert.deepEqual(res.args, ['RESPONSE_TIMEOUT']);
      assert.ok(res.ms >= RPC_TIMEOUT - 100 && res.ms < RPC_TIMEOUT + 1500, `RESPONSE_TIMEOUT after ${res.ms} ms (rpcTimeout is ${RPC_TIMEOUT})`);
      const texts = rpcTexts(r1, c0);
      const cid = texts[0] && texts[0].split('|')[3];
      assert.deepEqual(texts, [`P|A|${name}|${cid}`, `P|E|RESPONSE_TIMEOUT|${name}|${cid}`]);
      assert.deepEqual(asked, [{ q: 1 }]);
      for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
    } finally {
      await closeAll(clients);
    }
  });
});
