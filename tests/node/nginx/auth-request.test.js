'use strict';
// nginx's auth_request variant (nginx/corestream-http.conf, variant C) in front of the
// proxy-header auth node: nginx asks an auth service (started here, on NGINX_AUTH_SERVICE)
// before every request; the service names the user in X-Auth-User (and clientData in
// X-Auth-User-Data), nginx forwards them as X-Forwarded-User / X-Forwarded-User-Data.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('http');
const ds2 = require('../lib/ds2');
const ds = require('../lib/ds');
const px = require('../lib/proxy');
const { parseHostPort } = require('../lib/util');
const { getAllIncluding } = require('../lib/ops');

test.after(() => px.closeLeftovers());

const AUTHREQ = () => px.env('NGINX_AUTHREQ_URL');

// bearer token -> [user, clientData header or undefined]
const TOKENS = {
  'Bearer tok-alice': ['alice', '{"team":"red","level":3}'],
  'Bearer tok-bob': ['bob', undefined],
};
const seen = []; // {uri, authorization} per auth subrequest
let service;

test.before(async () => {
  const { host, port } = parseHostPort(px.env('NGINX_AUTH_SERVICE'));
  service = http.createServer((req, res) => {
    seen.push({ path: req.url, uri: req.headers['x-original-uri'], authorization: req.headers.authorization, forwardedUser: req.headers['x-forwarded-user'] });
    const entry = TOKENS[req.headers.authorization];
    if (!entry) {
      res.writeHead(401, { 'Content-Length': 0 });
      return res.end();
    }
    const headers = { 'Content-Length': 0, 'X-Auth-User': entry[0] };
    if (entry[1]) headers['X-Auth-User-Data'] = entry[1];
    res.writeHead(200, headers);
    res.end();
  });
  await new Promise((resolve, reject) => {
    service.once('error', reject);
    service.listen(port, host, resolve);
  });
});

test.after(() => new Promise((resolve) => (service ? service.close(resolve) : resolve())));

test('auth_request: the service says no -> 401 from nginx; the subrequest carries the client headers and the URI', { timeout: 10000 }, async () => {
  const n = seen.length;
  const none = await px.request(AUTHREQ(), { path: '/deepstream', headers: px.upgradeHeaders() });
  assert.equal(none.status, 401);
  const bad = await px.request(AUTHREQ(), { path: '/deepstream?x=1', headers: px.upgradeHeaders({ Authorization: 'Bearer nope' }) });
  assert.equal(bad.status, 401);
  assert.equal(seen.length, n + 2);
  assert.equal(seen[n + 1].path, '/auth');
  assert.equal(seen[n + 1].uri, '/deepstream?x=1');
  assert.equal(seen[n + 1].authorization, 'Bearer nope');
});

test('auth_request: alice logs in as alice with the clientData of the service; bob sees her', { timeout: 15000 }, async () => {
  px.requireAuthNode();
  const clients = [];
  try {
    const alice = ds2.create(AUTHREQ(), 'alice', {
      nodeSocketOptions: { headers: { Authorization: 'Bearer tok-alice', 'X-Forwarded-User': 'mallory' } },
    });
    clients.push(alice);
    const args = await ds2.login(alice, { username: 'mallory' });
    assert.deepEqual(args, [true, { team: 'red', level: 3 }]);
    const bob = await ds2.open(AUTHREQ(), {}, 'bob', { nodeSocketOptions: { headers: { Authorization: 'Bearer tok-bob' } } });
    clients.push(bob);
    const names = await getAllIncluding(bob, 'alice');
    assert.ok(names.includes('alice') && !names.includes('mallory'), JSON.stringify(names));
  } finally {
    await ds2.closeAll(clients);
  }
});

test('auth_request: engine.io long-polling, every poll is authorised by the service', { timeout: 15000 }, async () => {
  px.requireAuthNode();
  const n = seen.length;
  const c = px.browserClient(AUTHREQ(), 'eio-alice', { transports: ['polling'] }, { extraHeaders: { Authorization: 'Bearer tok-alice' } });
  try {
    const args = await ds.login(c, {}, 5000);
    assert.deepEqual(args, [true, { team: 'red', level: 3 }]);
    for (let i = 0; i < 5; i++) {
      const rec = c.record.getRecord(ds.uid(`eio-${i}`));
      await new Promise((resolve) => rec.whenReady(resolve));
    }
    // the handshake, the login post and its poll, 5 record round trips: one subrequest each
    assert.ok(seen.length - n >= 8, `only ${seen.length - n} auth subrequests`);
    assert.deepEqual(c.errors, []);
  } finally {
    await ds.close(c);
  }
});
