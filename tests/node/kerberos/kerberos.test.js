'use strict';
// Kerberos at nginx, end to end (scripts/kerberos-tests.sh): a real KDC, users' tickets from
// kinit, Negotiate tokens made from them with MIT Kerberos (python3-gssapi), nginx with TLS and
// auth_request to nginx/corestream-spnego.py, a corestream node with auth type proxy-header
// behind it. The real deepstream.io-client-js 2.3.4 (WebSocket) and 1.1.1 (engine.io polling,
// polling -> WebSocket) log in with the token in their request headers.
const test = require('node:test');
const assert = require('node:assert/strict');
const ds2 = require('../lib/ds2');
const ds = require('../lib/ds');
const px = require('../lib/proxy');
const rawws = require('../lib/raw-ws');
const krb = require('../lib/kerberos');
const util = require('../lib/util');
const { getAllIncluding } = require('../lib/ops');

const NGINX = () => krb.env('KRB_NGINX_URL');
const WSS = () => `wss://${NGINX()}`;
const HTTPS = () => `https://${NGINX()}`;

let aliceCache;
let bobCache;

test.before(() => {
  aliceCache = krb.kinit('alice');
  bobCache = krb.kinit('bob');
});
test.after(async () => {
  await px.closeLeftovers();
  krb.cleanCaches();
});

/** the node's connection totals (direct, not through nginx) */
async function nodeConnections() {
  const m = await util.metrics(krb.env('KRB_NODE_HTTP'));
  return ['websocket', 'engineio', 'tcp'].map((t) => m.get(`corestream_connections_total{transport="${t}"}`) || 0);
}

/** a WebSocket upgrade and an engine.io handshake through nginx with `authorization` */
async function bothRequests(authorization) {
  const headers = authorization ? { Authorization: authorization } : {};
  const upgrade = await krb.request(NGINX(), { path: '/deepstream', headers: px.upgradeHeaders(headers) });
  const handshake = await krb.request(NGINX(), { path: `/deepstream/?EIO=3&transport=polling&t=${Date.now()}`, headers });
  return [upgrade, handshake];
}

/** a 2.3.4 client through nginx with this Authorization header */
function wsClient(label, authorization) {
  return ds2.create(WSS(), label, { nodeSocketOptions: { headers: { Authorization: authorization } } });
}

/** a 2.3.4 client through nginx, logged in with a fresh token from `cache` */
function openWith(label, cache) {
  return ds2.open(WSS(), {}, label, { nodeSocketOptions: { headers: { Authorization: krb.negotiate(cache) } } });
}

/** a 1.1.1 engine.io client through nginx with this Authorization header */
function eioClient(label, authorization, transports) {
  return px.browserClient(HTTPS(), label, transports ? { transports } : {}, { extraHeaders: { Authorization: authorization } });
}

test('no ticket: nginx answers 401 with WWW-Authenticate: Negotiate, and the node never sees the request', { timeout: 15000 }, async () => {
  const before = await nodeConnections();
  for (const res of await bothRequests(undefined)) {
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Negotiate');
  }
  // the real 2.3.4 client without a token never opens a session
  const c = ds2.create(WSS(), 'no-ticket');
  try {
    await ds2.waitFor(() => c.errors.some((e) => e.event === 'connectionError'), 3000, () => `a connection error (got ${JSON.stringify(c.errors)})`);
    assert.notEqual(c.getConnectionState(), 'OPEN');
  } finally {
    await ds2.close(c);
  }
  assert.deepEqual(await nodeConnections(), before);
});

test('a wrong ticket (another service), a garbage token and an expired ticket: 401, the node sees nothing', { timeout: 20000 }, async () => {
  const before = await nodeConnections();
  const wrongService = krb.negotiate(aliceCache, 'HTTP@elsewhere');
  const good = krb.negotiate(aliceCache);
  const garbage = good.slice(0, 40) + 'AAAA' + good.slice(44);
  const short = krb.kinit('alice', '3s');
  const expiring = krb.negotiate(short); // a valid token, used only after its ticket ended
  const again = krb.negotiate(short);
  for (const authorization of [wrongService, garbage, 'Negotiate', 'Negotiate !!!not-base64', 'Basic YWxpY2U6YWxpY2U=']) {
    for (const res of await bothRequests(authorization)) {
      assert.equal(res.status, 401, authorization.slice(0, 30));
    }
  }
  // the same ticket's token is good while the ticket is
  const [fresh] = await bothRequests(again);
  assert.equal(fresh.status, 101);
  await util.sleep(4500);
  for (const res of await bothRequests(expiring)) {
    assert.equal(res.status, 401);
  }
  // and a token seen while the ticket was valid stops working with it
  const [late] = await bothRequests(again);
  assert.equal(late.status, 401);
  const after = await nodeConnections();
  assert.deepEqual(after, [before[0] + 1, before[1] + 1, before[2]], 'only the good token\'s two requests reached the node');
});

test('2.3.4 over WebSocket: alice and bob log in as their principals (authData ignored); a forged X-Forwarded-User is replaced', { timeout: 15000 }, async () => {
  const clients = [];
  try {
    const alice = ds2.create(WSS(), 'alice', {
      nodeSocketOptions: { headers: { Authorization: krb.negotiate(aliceCache), 'X-Forwarded-User': 'mallory' } },
    });
    clients.push(alice);
    assert.deepEqual(await ds2.login(alice, { username: 'mallory' }), [true, null]);
    const bob = wsClient('bob', krb.negotiate(bobCache));
    clients.push(bob);
    assert.deepEqual(await ds2.login(bob, {}), [true, null]);
    const names = await getAllIncluding(bob, 'alice');
    assert.ok(names.includes('alice') && !names.includes('mallory'), JSON.stringify(names));
  } finally {
    await ds2.closeAll(clients);
  }
});

test('1.1.1 over engine.io: long-polling only, and polling upgraded to WebSocket, log in with the ticket', { timeout: 20000 }, async () => {
  for (const transports of [['polling'], undefined]) {
    const c = eioClient(`eio-${transports ? 'polling' : 'upgrade'}`, krb.negotiate(aliceCache), transports);
    try {
      const args = await ds.login(c, { username: 'mallory' }, 5000);
      assert.deepEqual(args, [true, null]);
      // a record round trip as alice (the rules let her write her own record)
      const rec = c.record.getRecord('user/alice');
      await new Promise((resolve) => rec.whenReady(resolve));
      rec.set('seen', transports ? 'polling' : 'upgrade');
      if (!transports) {
        await util.waitFor(() => px.eioSocket(c).transport === 'websocket', 5000, 'the upgrade to WebSocket');
      }
      assert.deepEqual(c.errors, []);
    } finally {
      await ds.close(c);
    }
  }
});

test('permissions keyed on the Kerberos user decide record writes', { timeout: 15000 }, async () => {
  const clients = [];
  try {
    const alice = await openWith('alice', aliceCache);
    clients.push(alice);
    const bob = await openWith('bob', bobCache);
    clients.push(bob);
    const name = 'user/bob';
    const mine = util.uid('bob');
    const acked = await util.withTimeout(new Promise((resolve) => bob.record.setData(name, { v: mine }, resolve)), 3000, 'bob: setData ack');
    assert.equal(acked, null);
    // alice writing bob's record: R|E|MESSAGE_DENIED, nothing stored
    const from = alice.wire.length;
    alice.record.setData(name, { v: 'from alice' });
    await util.waitFor(() => alice.errors.some((e) => e.event === 'MESSAGE_DENIED' && e.topic === 'R'), 3000, () => `alice's write denied (errors ${JSON.stringify(alice.errors)})`);
    assert.ok(ds2.wireTexts(alice, from).some((t) => t.startsWith(`R|E|MESSAGE_DENIED|${name}|`)), JSON.stringify(ds2.wireTexts(alice, from)));
    const [error, data] = await util.callbackArgs((cb) => bob.record.snapshot(name, cb), 'snapshot');
    assert.equal(error, null);
    assert.deepEqual(data, { v: mine });
  } finally {
    await ds2.closeAll(clients);
  }
});

test('an open WebSocket outlives its ticket; a new session with that ticket is refused', { timeout: 20000 }, async () => {
  const clients = [];
  try {
    const short = krb.kinit('alice', '3s');
    const authorization = krb.negotiate(short);
    const alice = wsClient('alice-short', authorization);
    clients.push(alice);
    assert.deepEqual(await ds2.login(alice, {}), [true, null]);
    const bob = await openWith('bob', bobCache);
    clients.push(bob);
    await util.sleep(4500); // the ticket ended
    const { atA, atB } = await require('../lib/ops').eventsBothWays(alice, bob, util.uid('krb'), ['a', 'b'], 3000);
    assert.deepEqual([atA, atB], [['a', 'b'], ['a', 'b']]);
    assert.equal(alice.getConnectionState(), 'OPEN');
    const [upgrade] = await bothRequests(authorization);
    assert.equal(upgrade.status, 401);
  } finally {
    await ds2.closeAll(clients);
  }
});

test('a polling session ends when its ticket does: its polls are refused, the node closes it after the ping timeout', { timeout: 25000 }, async () => {
  const clients = [];
  try {
    // bob provides carol's feed: told when her subscription arrives, and when it goes away
    // (1.x sessions do not count for 2.x presence, so presence cannot show her session end)
    const bob = await openWith('bob', bobCache);
    clients.push(bob);
    const feed = util.uid('carol-feed');
    const calls = [];
    bob.event.listen(`${feed}/.*`, (match, isSubscribed, response) => {
      calls.push({ isSubscribed, at: Date.now() });
      if (isSubscribed) response.accept();
    });
    await util.sleep(200); // the listen reached the node
    // carol: a user no other test logs in as
    const short = krb.kinit('carol', '4s');
    const ticketEnd = Date.now() + 4000;
    const c = eioClient('eio-carol', krb.negotiate(short), ['polling']);
    assert.deepEqual(await ds.login(c, {}, 5000), [true, null]);
    c.event.subscribe(`${feed}/prices`, () => {});
    await util.waitFor(() => calls.some((e) => e.isSubscribed), 3000, () => `bob is offered carol's subscription (${JSON.stringify(calls)})`);
    // the node: engineioPingInterval 1 s + engineioPingTimeout 2 s without a poll that gets through
    await util.waitFor(() => calls.some((e) => !e.isSubscribed), 12000, () => `carol's subscription goes away (${JSON.stringify(calls)})`);
    const gone = calls.find((e) => !e.isSubscribed).at;
    assert.ok(gone >= ticketEnd - 1000, `carol's session ended ${ticketEnd - gone} ms before her ticket did`);
    assert.ok(gone <= ticketEnd + 8000, `carol's session ended ${gone - ticketEnd} ms after her ticket did`);
    await ds.close(c);
  } finally {
    await ds2.closeAll(clients);
  }
});

test('the validator names whole principals with --user principal; a client naming itself at the node directly is refused', { timeout: 10000 }, async () => {
  const res = await util.request(krb.env('KRB_VALIDATOR_FULL'), { path: '/', headers: { Authorization: krb.negotiate(aliceCache) } });
  assert.equal(res.status, 204);
  assert.equal(res.headers['x-auth-user'], `alice@${krb.env('KRB_REALM')}`);
  // straight to the node (not a trusted proxy): the header does not name the user
  const c = await rawws.connect(krb.env('KRB_NODE_HTTP'), { label: 'forger' }, { headers: { 'X-Forwarded-User': 'alice' } });
  try {
    let reply;
    try {
      reply = await c.login({ username: 'alice' });
    } catch (err) {
      reply = err.reply;
    }
    assert.ok(reply && reply[0] === 'A' && reply[1] === 'E', `the login was not refused: ${JSON.stringify(reply)}`);
  } finally {
    await c.close();
  }
});

test('a backend with its own principal (a keytab, no password) logs in through the HTTP side and feeds users', { timeout: 15000 }, async () => {
  // what the README recommends for backends: the 1.x TCP protocol cannot carry a Kerberos token
  const clients = [];
  try {
    const backend = await openWith('svc-feed', krb.kinitKeytab('svc-feed'));
    clients.push(backend);
    const alice = await openWith('alice', aliceCache);
    clients.push(alice);
    assert.ok((await getAllIncluding(alice, 'svc-feed')).includes('svc-feed'));
    const { atA } = await require('../lib/ops').eventsBothWays(alice, backend, util.uid('feed'), ['tick-1', 'tick-2'], 3000);
    assert.deepEqual(atA, ['tick-1', 'tick-2']);
    // and its own record is writable by it alone (user/$userId with user.id === 'svc-feed')
    const acked = await util.withTimeout(new Promise((resolve) => backend.record.setData('user/svc-feed', { up: true }, resolve)), 3000, 'svc-feed: setData ack');
    assert.equal(acked, null);
  } finally {
    await ds2.closeAll(clients);
  }
});
