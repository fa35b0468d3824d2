'use strict';
// Authentication by nginx, user passed to corestream in X-Forwarded-User (auth type
// proxy-header, trustedProxies: [127.0.0.2]; nginx connects from 127.0.0.2 with proxy_bind,
// the test clients from 127.0.0.1).
//   - nginx "basic" (nginx/corestream-http.conf, variant B: basic auth, alice:secret and
//     bob:builder): no or wrong credentials get 401 from nginx; alice logs in as alice whatever
//     authData and X-Forwarded-User* headers she sends; engine.io (1.x) too;
//   - nginx "strip" (variant A, no auth in nginx): a client's own X-Forwarded-User is removed;
//   - directly at the node: a client that is not a trusted proxy cannot name itself with the
//     header (WebSocket, engine.io, TCP); the trusted address can (the control case).
const test = require('node:test');
const assert = require('node:assert/strict');
const ds2 = require('../lib/ds2');
const ds = require('../lib/ds');
const raw = require('../lib/raw');
const rawws = require('../lib/raw-ws');
const px = require('../lib/proxy');
const { getAllIncluding, isPresenceAckTimeout } = require('../lib/ops');

test.after(() => px.closeLeftovers());

const BASIC = () => px.env('NGINX_BASIC_URL');
const STRIP = () => px.env('NGINX_STRIP_URL');
const ALICE = px.basic('alice', 'secret');
const BOB = px.basic('bob', 'builder');

/** a raw WebSocket login; -> the auth reply (A|A or A|E...) as fields */
async function rawLogin(url, wsOptions, label) {
  const c = await rawws.connect(url, { label }, wsOptions);
  try {
    return await c.login({ username: 'mallory', password: 'whatever' });
  } catch (err) {
    if (err.reply) return err.reply;
    throw err;
  } finally {
    await c.close();
  }
}

test('basic auth: nginx answers 401 without credentials or with a wrong password (WebSocket and engine.io)', { timeout: 10000 }, async () => {
  const none = await px.request(BASIC(), { path: '/deepstream', headers: px.upgradeHeaders() });
  assert.equal(none.status, 401);
  assert.match(String(none.headers['www-authenticate']), /^Basic realm="corestream"/);
  const wrong = await px.request(BASIC(), { path: '/deepstream', headers: px.upgradeHeaders({ Authorization: px.basic('alice', 'wrong') }) });
  assert.equal(wrong.status, 401);
  const unknown = await px.request(BASIC(), { path: '/deepstream', headers: px.upgradeHeaders({ Authorization: px.basic('mallory', 'secret') }) });
  assert.equal(unknown.status, 401);
  const eio = await px.eioHandshake(BASIC());
  assert.equal(eio.status, 401);
  // and the real 2.3.4 client without credentials never gets to log in
  const c = ds2.create(BASIC(), 'no-credentials');
  try {
    // (the library reports the failed upgrade as a connectionError whose text does not keep
    // the status; the 401 itself is checked above)
    await ds2.waitFor(() => c.errors.some((e) => e.event === 'connectionError'), 3000, () => `a connection error (got ${JSON.stringify(c.errors)})`);
    assert.notEqual(c.getConnectionState(), 'OPEN');
    assert.deepEqual(ds2.wireTexts(c), []);
  } finally {
    await ds2.close(c);
  }
});

test('basic auth: alice logs in as alice (authData and her own X-Forwarded-User* ignored); bob sees her in presence', { timeout: 15000 }, async () => {
  px.requireAuthNode();
  const clients = [];
  try {
    const alice = ds2.create(BASIC(), 'alice', {
      nodeSocketOptions: {
        headers: { Authorization: ALICE, 'X-Forwarded-User': 'mallory', 'X-Forwarded-User-Data': '{"admin":true}' },
      },
    });
    clients.push(alice);
    const args = await ds2.login(alice, { username: 'mallory', password: 'x' });
    // nginx replaced X-Forwarded-User with alice and removed X-Forwarded-User-Data: no clientData
    assert.deepEqual(args, [true, null]);
    const bob = await ds2.open(BASIC(), { username: 'eve' }, 'bob', { nodeSocketOptions: { headers: { Authorization: BOB } } });
    clients.push(bob);

    const fromBob = await getAllIncluding(bob, 'alice');
    assert.ok(fromBob.includes('alice'), `bob sees ${JSON.stringify(fromBob)}`);
    assert.ok(!fromBob.includes('mallory') && !fromBob.includes('eve') && !fromBob.includes('bob'), JSON.stringify(fromBob));
    const fromAlice = await getAllIncluding(alice, 'bob');
    assert.ok(fromAlice.includes('bob'), `alice sees ${JSON.stringify(fromAlice)}`);

    // and they talk
    const name = ds2.uid('auth');
    const got = [];
    bob.event.subscribe(name, (d) => got.push(d));
    const deadline = Date.now() + 5000;
    while (got.length === 0) {
      assert.ok(Date.now() < deadline, 'no event from alice to bob');
      alice.event.emit(name, 'hi');
      await ds2.sleep(50);
    }
    for (const c of clients) assert.deepEqual(ds2.errorsExcept(c, isPresenceAckTimeout), [], `${c.label} had errors`);
  } finally {
    await ds2.closeAll(clients);
  }
});

test('basic auth: the 1.1.1 client over engine.io (polling, then polling -> WebSocket) logs in with credentials', { timeout: 15000 }, async () => {
  px.requireAuthNode();
  for (const options of [{ transports: ['polling'] }, {}]) {
    const c = px.browserClient(BASIC(), 'eio-alice', options, { extraHeaders: { Authorization: ALICE, 'X-Forwarded-User': 'mallory' } });
    try {
      const args = await ds.login(c, { username: 'mallory' }, 5000);
      assert.equal(args[0], true, `login failed: ${JSON.stringify(args)}`);
      // a few server round trips on the session
      const rec = c.record.getRecord(ds.uid('eio-auth'));
      await new Promise((resolve) => rec.whenReady(resolve));
      if (!options.transports) {
        await ds.waitFor(() => px.eioSocket(c).transport === 'websocket', 5000, 'the WebSocket upgrade');
      }
      assert.deepEqual(c.errors, []);
    } finally {
      await ds.close(c);
    }
  }
});

test('no auth in nginx (variant A): a client cannot log in by sending X-Forwarded-User itself', { timeout: 10000 }, async () => {
  px.requireAuthNode();
  const reply = await rawLogin(STRIP(), { headers: { 'X-Forwarded-User': 'alice', 'X-Forwarded-User-Data': '{"admin":true}' } }, 'forged-via-nginx');
  assert.equal(reply[0], 'A');
  assert.equal(reply[1], 'E', `logged in: ${reply.join('|')}`);
  assert.equal(reply[2], 'INVALID_AUTH_DATA');
});

test('directly at the node: X-Forwarded-User from an untrusted address (127.0.0.1) is refused; from the trusted proxy address it is taken', { timeout: 15000 }, async () => {
  const node = px.requireAuthNode();
  const proxy = px.env('NGINX_PROXY_BIND');
  const forged = await rawLogin(node, { headers: { 'X-Forwarded-User': 'alice' }, localAddress: '127.0.0.1' }, 'forged-direct');
  assert.deepEqual(forged.slice(0, 3), ['A', 'E', 'INVALID_AUTH_DATA'], `logged in: ${forged.join('|')}`);
  // the control case: the same request from the address nginx uses is believed
  const trusted = await rawLogin(node, { headers: { 'X-Forwarded-User': 'alice' }, localAddress: proxy }, 'as-proxy');
  assert.deepEqual(trusted.slice(0, 2), ['A', 'A'], `refused: ${trusted.join('|')}`);
  // and from the trusted address without the header, nobody is logged in
  const missing = await rawLogin(node, { localAddress: proxy }, 'no-header');
  assert.deepEqual(missing.slice(0, 3), ['A', 'E', 'INVALID_AUTH_DATA'], `logged in: ${missing.join('|')}`);

  // engine.io handshake directly from 127.0.0.1 with the header: refused too
  const eio = px.browserClient(node, 'forged-eio', { transports: ['polling'] }, { extraHeaders: { 'X-Forwarded-User': 'alice' } });
  try {
    const args = await ds.login(eio, { username: 'alice' }, 5000);
    assert.equal(args[0], false, `engine.io login from an untrusted address succeeded: ${JSON.stringify(args)}`);
  } finally {
    await ds.close(eio);
  }
});

test('directly at the node: a 1.x TCP login (no HTTP request, no header) is refused', { timeout: 10000 }, async () => {
  px.requireAuthNode();
  const tcp = px.env('NGINX_AUTH_NODE_TCP');
  const c = await raw.connect(tcp, { label: 'tcp' });
  try {
    await assert.rejects(c.login({ username: 'alice' }), (err) => {
      assert.deepEqual(err.reply.slice(0, 3), ['A', 'E', 'INVALID_AUTH_DATA']);
      return true;
    });
  } finally {
    await c.close();
  }
});
