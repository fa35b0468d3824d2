'use strict';
// RPC with the real client library of a dialect (tests/node/lib/dialect.js: 1.1.1 over TCP,
// 2.3.4 over websocket), plus raw providers (tests/node/lib/raw.js, raw-ws.js) for what the
// library can't do (never ack, ack and then vanish). Run by tests/node/v1/rpc.test.js and
// tests/node/v2/rpc.test.js.
//
// Library behaviours these tests rely on (src/rpc/*.js of 1.1.1 and 2.3.4, checked against
// deepstream 1.1.1 and 2.4.1):
//   - make(name, data, cb): cb(null, result) on `P|RES`, and cb(<error string>) with ONE argument
//     on `P|E|<error>|<name>|<cid>` (e.g. 'boom', 'NO_RPC_PROVIDER', 'ACK_TIMEOUT',
//     'RESPONSE_TIMEOUT'); such errors are not emitted as client 'error' events;
//   - the client's own rpcAckTimeout / rpcResponseTimeout (6000 / 10000 ms) are longer than the
//     server's (rpcAckTimeout 1000, rpcTimeout 3000 in tests/fixtures/open.yml and v2-open.yml),
//     so the server's errors are what the caller sees;
//   - a provider callback gets (data, response); the response acks by itself on the next tick
//     (1.x: `P|A|<name>|<cid>`, 2.x: `P|A|REQ|<name>|<cid>`) unless the callback called
//     reject()/error() synchronously or set response.autoAck = false; send() acks first if needed.
// Reference captures: captures/v1 and captures/v2, lib-rpc-*.log, raw-rpc-wire.log.
//
// The tests run concurrently (the timeout tests need ~1 s and ~3 s); each uses its own names.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { make, rpcTexts, provide, rerouteHandler } = require('../lib/ops');
const { closeRaws } = require('../lib/wire');

const RPC_ACK_TIMEOUT = 1000; // tests/fixtures/open.yml, v2-open.yml
const RPC_TIMEOUT = 3000;

module.exports = function rpcSuite(dialect) {
  const { ds, raw, OPEN } = dialect;
  // the field of the provider's ack that holds the correlation id
  const CID = dialect.rpcAck('name', 'cid').split('|').indexOf('cid');

  /** a raw provider of `name` (P|S acked) */
  async function rawProvider(name, label) {
    const c = await raw.connect(OPEN(), { auth: { username: label }, label });
    const from = c.received.length;
    c.send('P', 'S', name);
    await c.waitForMessage(['P', 'A', 'S', name], 3000, from);
    return c;
  }

  /**
   * a raw provider of `name` and a library caller; runs fn with them, the message counts they
   * had before (p0, c0) and the time (t0); closes both
   */
  async function withRawProvider(name, fn) {
    let prov;
    let caller;
    try {
      prov = await rawProvider(name, 'rawprov');
      caller = await ds.open(OPEN(), { username: 'caller' }, 'caller');
      await fn({ prov, caller, p0: prov.received.length, c0: caller.wire.length, t0: Date.now() });
    } finally {
      await ds.closeAll([caller]);
      await closeRaws([prov]);
    }
  }

  describe(`rpc (deepstream.io-client-js ${dialect.client})`, { concurrency: true }, () => {
    it('rpc provide/make: the provider computes the result, typed data round-trips, ack comes before the response', { timeout: 15000 }, async () => {
      const prefix = ds.uid('rpc');
      const add = `${prefix}/add`;
      const echo = `${prefix}/echo`;
      const clients = [];
      try {
        const [provider, caller] = await ds.openAll(OPEN(), ['provider', 'caller'], clients);
        const received = [];
        await provide(provider, add, (data, response) => {
          received.push(data);
          response.send(data.a + data.b);
        });
        await provide(provider, echo, (data, response) => response.send(data));

        const c0 = caller.wire.length;
        const r = await make(caller, add, { a: 1, b: 2 });
        assert.deepEqual(r.args, [null, 3]);
        assert.deepEqual(received, [{ a: 1, b: 2 }]);
        const texts = rpcTexts(caller, c0);
        assert.equal(texts.length, 2, JSON.stringify(texts));
        const cid = texts[0].split('|')[CID];
        assert.ok(cid, 'no correlation id');
        assert.deepEqual(texts, [dialect.rpcAck(add, cid), `P|RES|${add}|${cid}|N3`]);

        assert.deepEqual((await make(caller, add, { a: 'x', b: 'y' })).args, [null, 'xy']);

        const values = [{ a: [1, { b: null }], s: 'x|y' }, 'hello', '', 42.5, -1, 0, true, false, null, [1, 'two']];
        const results = await Promise.all(values.map((v) => make(caller, echo, v)));
        results.forEach((res, i) => assert.deepEqual(res.args, [null, values[i]], `echo of ${JSON.stringify(values[i])}`));
        results.forEach((res) => assert.equal(res.out.calls, 1));

        for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
      } finally {
        await ds.closeAll(clients);
      }
    });

    it("rpc provider error: response.error('boom') reaches the caller as err 'boom'", { timeout: 15000 }, async () => {
      const name = `${ds.uid('rpc-err')}/fail`;
      const clients = [];
      try {
        const [provider, caller] = await ds.openAll(OPEN(), ['provider', 'caller'], clients);
        await provide(provider, name, (data, response) => response.error('boom'));
        const p0 = provider.wire.length;
        const c0 = caller.wire.length;
        const r = await make(caller, name, null);
        assert.deepEqual(r.args, ['boom']);
        const texts = rpcTexts(caller, c0);
        assert.equal(texts.length, 1, JSON.stringify(texts));
        assert.match(texts[0], new RegExp(`^P\\|E\\|boom\\|${name.replace(/[/-]/g, '\\$&')}\\|[^|]+$`));
        // error() is sent without an ack (the caller got no P|A above); the provider got only the request
        assert.deepEqual(rpcTexts(provider, p0).map((t) => t.split('|')[1]), ['REQ']);
        await ds.sleep(100);
        assert.equal(r.out.calls, 1);
        for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
      } finally {
        await ds.closeAll(clients);
      }
    });

    it('rpc reject/reroute: the provider asked first rejects, the other one answers (either order)', { timeout: 15000 }, async (t) => {
      const name = `${ds.uid('rpc-rr')}/rr`;
      const clients = [];
      try {
        const [p1, p2, caller] = await ds.openAll(OPEN(), ['p1', 'p2', 'caller'], clients);
        const state = {}; // request k -> {rejectedBy: [], answeredBy: []}
        await provide(p1, name, rerouteHandler(state, 'p1'));
        await provide(p2, name, rerouteHandler(state, 'p2'));

        const N = 6;
        for (let k = 0; k < N; k++) {
          state[k] = { rejectedBy: [], answeredBy: [] };
          const r = await make(caller, name, { k });
          const st = state[k];
          assert.equal(st.rejectedBy.length, 1, `request ${k}: ${JSON.stringify(st)}`);
          assert.equal(st.answeredBy.length, 1, `request ${k}: ${JSON.stringify(st)}`);
          assert.notEqual(st.rejectedBy[0], st.answeredBy[0], `request ${k} was rerouted to the provider that rejected it`);
          assert.deepEqual(r.args, [null, `from-${st.answeredBy[0]}`]);
        }
        t.diagnostic(`reject/reroute order (rejected>answered): ${Object.values(state).map((st) => `${st.rejectedBy[0]}>${st.answeredBy[0]}`).join(' ')}`);
        // every request: the caller saw only the answering provider's ack and response
        const texts = rpcTexts(caller);
        assert.equal(texts.length, 2 * N, JSON.stringify(texts));
        assert.ok(texts.every((t) => /^P\|(A|RES)\|/.test(t)), JSON.stringify(texts));
        await ds.sleep(100);
        for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
      } finally {
        await ds.closeAll(clients);
      }
    });

    it("rpc no provider: make on a name nobody provides gets err 'NO_RPC_PROVIDER' at once", { timeout: 10000 }, async () => {
      const name = `${ds.uid('rpc-none')}/none`;
      const clients = [];
      try {
        const caller = await ds.open(OPEN(), { username: 'caller' }, 'caller');
        clients.push(caller);
        const c0 = caller.wire.length;
        const r = await make(caller, name, 1);
        assert.deepEqual(r.args, ['NO_RPC_PROVIDER']);
        assert.ok(r.ms < RPC_ACK_TIMEOUT, `NO_RPC_PROVIDER took ${r.ms} ms`);
        const texts = rpcTexts(caller, c0);
        assert.equal(texts.length, 1);
        assert.ok(texts[0].startsWith(`P|E|NO_RPC_PROVIDER|${name}|`), texts[0]);
        assert.deepEqual(caller.errors, []);
      } finally {
        await ds.closeAll(clients);
      }
    });

    it("rpc ack timeout: a raw provider that never acks -> err 'ACK_TIMEOUT' after about rpcAckTimeout, nothing after it", { timeout: 15000 }, async () => {
      const name = `${ds.uid('rpc-ack')}/slowack`;
      await withRawProvider(name, async ({ prov, caller, p0, c0, t0 }) => {
        const r = await make(caller, name, 1, 5000);
        assert.deepEqual(r.args, ['ACK_TIMEOUT']);
        assert.ok(r.ms >= RPC_ACK_TIMEOUT - 100 && r.ms < RPC_ACK_TIMEOUT + 1000, `ACK_TIMEOUT after ${r.ms} ms (rpcAckTimeout is ${RPC_ACK_TIMEOUT})`);
        const req = prov.received.slice(p0).filter((m) => m[0] === 'P' && m[1] === 'REQ');
        assert.equal(req.length, 1);
        const cid = req[0][3];
        assert.deepEqual(req[0], ['P', 'REQ', name, cid, 'N1']);
        // the rpc is over: no RESPONSE_TIMEOUT (or anything else) follows
        await ds.sleep(Math.max(0, RPC_TIMEOUT + 300 - (Date.now() - t0)));
        assert.deepEqual(rpcTexts(caller, c0), [`P|E|ACK_TIMEOUT|${name}|${cid}`]);
        assert.equal(r.out.calls, 1);
        assert.deepEqual(caller.errors, []);
      });
    });

    it("rpc response timeout: a library provider that (auto-)acks but never responds -> err 'RESPONSE_TIMEOUT' after about rpcTimeout", { timeout: 15000 }, async () => {
      const name = `${ds.uid('rpc-resp')}/slowresp`;
      const clients = [];
      try {
        const [provider, caller] = await ds.openAll(OPEN(), ['provider', 'caller'], clients);
        const asked = [];
        await provide(provider, name, (data) => asked.push(data)); // never responds
        const c0 = caller.wire.length;
        const p0 = provider.wire.length;
        const r = await make(caller, name, { q: 1 }, 7000);
        assert.deepEqual(r.args, ['RESPONSE_TIMEOUT']);
        assert.ok(r.ms >= RPC_TIMEOUT - 100 && r.ms < RPC_TIMEOUT + 1500, `RESPONSE_TIMEOUT after ${r.ms} ms (rpcTimeout is ${RPC_TIMEOUT})`);
        assert.deepEqual(asked, [{ q: 1 }]);
        const texts = rpcTexts(caller, c0);
        assert.equal(texts.length, 2, JSON.stringify(texts));
        const cid = texts[0].split('|')[CID];
        assert.deepEqual(texts, [dialect.rpcAck(name, cid), `P|E|RESPONSE_TIMEOUT|${name}|${cid}`]);
        // the provider was only sent the request
        assert.deepEqual(rpcTexts(provider, p0), [`P|REQ|${name}|${cid}|O{"q":1}`]);
        assert.equal(r.out.calls, 1);
        for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
      } finally {
        await ds.closeAll(clients);
      }
    });

    it('rpc provider disconnects with a request in flight: the caller gets an error and does not hang; the provider is gone', { timeout: 15000 }, async (t) => {
      // Whatever the server does when the provider's socket closes (deepstream 1.1.1 does nothing:
      // the caller gets `P|E|RESPONSE_TIMEOUT|<name>|<cid>` when rpcTimeout (3000 ms) expires;
      // corestream answers at once), the caller must get some error within rpcTimeout + 500 ms.
      const name = `${ds.uid('rpc-dc')}/gone`;
      await withRawProvider(name, async ({ prov, caller, p0, c0, t0 }) => {
        const pending = make(caller, name, 'x', RPC_TIMEOUT + 500);
        const req = await prov.waitFor((m) => m[0] === 'P' && m[1] === 'REQ' && m[2] === name, 3000, p0, 'the request');
        const cid = req[3];
        prov.send(...dialect.rpcAck(name, cid).split('|')); // the ack of the dialect
        await ds.waitWire(caller, dialect.rpcAck(name, cid), 3000, c0);
        await prov.close();
        const closedAt = Date.now() - t0;
        const r = await pending; // rejects (fails the test) after rpcTimeout + 500 ms
        assert.ok(r.args.length >= 1 && typeof r.args[0] === 'string' && r.args[0].length > 0, `expected an error, got ${JSON.stringify(r.args)}`);
        const texts = rpcTexts(caller, c0);
        assert.equal(texts[0], dialect.rpcAck(name, cid));
        assert.ok(texts[1] && texts[1].startsWith(`P|E|${r.args[0]}|${name}|${cid}`), JSON.stringify(texts));
        t.diagnostic(`provider disconnect: caller got ${JSON.stringify(r.args)} after ${r.ms} ms (provider closed at ${closedAt} ms)`);

        // the closed provider is no longer registered
        assert.deepEqual((await make(caller, name, 'y')).args, ['NO_RPC_PROVIDER']);
        await ds.sleep(100);
        assert.equal(r.out.calls, 1);
        assert.deepEqual(caller.errors, []);
      });
    });

    it("rpc unprovide: after unprovide, make gets err 'NO_RPC_PROVIDER'", { timeout: 15000 }, async () => {
      const name = `${ds.uid('rpc-unp')}/u`;
      const clients = [];
      try {
        const [provider, caller] = await ds.openAll(OPEN(), ['provider', 'caller'], clients);
        let asked = 0;
        await provide(provider, name, (data, response) => {
          asked++;
          response.send('ok');
        });
        assert.deepEqual((await make(caller, name, 1)).args, [null, 'ok']);
        const p0 = provider.wire.length;
        provider.rpc.unprovide(name);
        await ds.waitWire(provider, `P|A|US|${name}`, 3000, p0);
        assert.deepEqual((await make(caller, name, 2)).args, ['NO_RPC_PROVIDER']);
        assert.equal(asked, 1);
        assert.deepEqual(rpcTexts(provider, p0), [`P|A|US|${name}`]);

        // providing again works again
        await provide(provider, name, (data, response) => response.send('again'));
        assert.deepEqual((await make(caller, name, 3)).args, [null, 'again']);
        for (const c of clients) assert.deepEqual(c.errors, [], `${c.label} had errors`);
      } finally {
        await ds.closeAll(clients);
      }
    });
  });
};
