'use strict';
// What nginx/corestream-http.conf sends upstream, seen by a fake upstream (a node HTTP server
// that answers with the request it got), for each auth variant. Independent of corestream:
//   - variant A: a client's X-Forwarded-User / -Data never pass; keep-alive upstream
//     connections (no "Connection: close"), reused by the next request; Upgrade/Connection
//     forwarded for an upgrade; nginx connects from the proxy_bind address;
//   - variant B: X-Forwarded-User is the basic-auth user, whatever the client sent;
//   - variant C: X-Forwarded-User / -Data are what the auth service answered.
// Each variant runs its own nginx (scripts/nginx.sh) in NGINX_TEST_TMP, stopped by PID.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('http');
const path = require('path');
const { execFileSync } = require('child_process');
const px = require('../lib/proxy');
const { freePorts } = require('../lib/util');

const ROOT = path.resolve(__dirname, '../../..');
const BIND = () => px.env('NGINX_PROXY_BIND');

/** a fake upstream: every request is answered with JSON of what arrived */
async function fakeUpstream() {
  const requests = [];
  const describe = (req) => ({
    method: req.method,
    url: req.url,
    headers: req.headers,
    remoteAddress: req.socket.remoteAddress,
    remotePort: req.socket.remotePort,
  });
  const server = http.createServer((req, res) => {
    const seen = describe(req);
    requests.push(seen);
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify(seen);
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.on('upgrade', (req, socket) => {
    const seen = describe(req);
    requests.push(seen);
    const body = JSON.stringify(seen);
    socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, requests, url: `127.0.0.1:${server.address().port}` };
}

/** starts nginx (scripts/nginx.sh) in front of `upstream`; -> {url, dir, pid} */
async function startNginx(name, upstream, extraArgs) {
  const dir = path.join(px.env('NGINX_TEST_TMP'), `nginx-${name}`);
  const [port] = await freePorts(1);
  const out = execFileSync('bash', [path.join(ROOT, 'scripts/nginx.sh'), '--dir', dir, '--http-port', String(port), '--http-upstream', upstream, '--proxy-bind', BIND(), ...extraArgs], { encoding: 'utf8' });
  return { url: `127.0.0.1:${port}`, dir, pid: Number(out.trim()) };
}

function stopNginx(n) {
  if (n) execFileSync('bash', [path.join(ROOT, 'scripts/nginx.sh'), '--dir', n.dir, '--stop']);
}

const upgrade = px.upgradeHeaders();
const forged = { 'X-Forwarded-User': 'mallory', 'X-Forwarded-User-Data': '{"admin":true}' };

test('variant A (no auth in nginx): user headers removed, keep-alive upstream, upgrade forwarded, proxy_bind', { timeout: 15000 }, async () => {
  const up = await fakeUpstream();
  let ngx;
  try {
    ngx = await startNginx('hdr-none', up.url, []);
    const poll = JSON.parse((await px.request(ngx.url, { path: '/deepstream/?EIO=3&transport=polling', headers: forged })).body);
    assert.equal(poll.headers['x-forwarded-user'], undefined);
    assert.equal(poll.headers['x-forwarded-user-data'], undefined);
    assert.equal(poll.headers.connection, undefined, 'a non-upgrade request must not close the upstream connection');
    assert.equal(poll.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(poll.remoteAddress, BIND(), 'nginx did not connect from the proxy_bind address');
    assert.equal(poll.url, '/deepstream/?EIO=3&transport=polling');
    // the next request (a new client connection) goes over the same, kept-alive upstream connection
    const post = JSON.parse((await px.request(ngx.url, { method: 'POST', path: '/deepstream/?EIO=3&transport=polling&sid=x', body: '1:6', headers: forged })).body);
    assert.equal(post.remotePort, poll.remotePort, 'the upstream connection was not reused');
    assert.equal(post.headers['x-forwarded-user'], undefined);

    const up1 = JSON.parse((await px.request(ngx.url, { path: '/deepstream', headers: Object.assign({}, upgrade, forged) })).body);
    assert.equal(up1.headers.upgrade, 'websocket');
    assert.equal(up1.headers.connection, 'upgrade');
    assert.equal(up1.headers['sec-websocket-key'], upgrade['Sec-WebSocket-Key']);
    assert.equal(up1.headers['x-forwarded-user'], undefined);

    for (const p of ['/metrics', '/health-check']) {
      const r = JSON.parse((await px.request(ngx.url, { path: p, headers: forged })).body);
      assert.equal(r.url, p);
      assert.equal(r.headers['x-forwarded-user'], undefined, p);
    }
    // anything else is not proxied
    assert.equal((await px.request(ngx.url, { path: '/other' })).status, 404);
  } finally {
    stopNginx(ngx);
    up.server.close();
  }
});

test('every auth variant commented out: the user headers are still removed on every proxied path', { timeout: 15000 }, async () => {
  const up = await fakeUpstream();
  let ngx;
  try {
    ngx = await startNginx('hdr-off', up.url, ['--auth-off']);
    const conf = require('fs').readFileSync(path.join(ngx.dir, 'corestream-http.conf'), 'utf8');
    assert.doesNotMatch(conf, /^\s*[^#\s].*#@auth-/m, 'some variant line is still active');
    const requests = [
      { path: '/deepstream/?EIO=3&transport=polling', headers: forged },
      { method: 'POST', path: '/deepstream/?EIO=3&transport=polling&sid=x', body: '1:6', headers: forged },
      { path: '/deepstream', headers: Object.assign({}, upgrade, forged) },
      { path: '/deepstream/?EIO=3&transport=websocket&sid=x', headers: Object.assign({}, upgrade, forged) },
      { path: '/metrics', headers: forged },
      { path: '/health-check', headers: forged },
    ];
    for (const request of requests) {
      const seen = JSON.parse((await px.request(ngx.url, request)).body);
      assert.equal(seen.headers['x-forwarded-user'], undefined, request.path);
      assert.equal(seen.headers['x-forwarded-user-data'], undefined, request.path);
    }
  } finally {
    stopNginx(ngx);
    up.server.close();
  }
});

test('variant B (basic auth): X-Forwarded-User is the authenticated user, never what the client sent', { timeout: 15000 }, async () => {
  const up = await fakeUpstream();
  let ngx;
  try {
    ngx = await startNginx('hdr-basic', up.url, ['--basic-auth', 'alice:secret']);
    const ok = JSON.parse((await px.request(ngx.url, { path: '/deepstream', headers: Object.assign({ Authorization: px.basic('alice', 'secret') }, upgrade, forged) })).body);
    assert.equal(ok.headers['x-forwarded-user'], 'alice');
    assert.equal(ok.headers['x-forwarded-user-data'], undefined);
    assert.equal(ok.remoteAddress, BIND());
    const n = up.requests.length;
    assert.equal((await px.request(ngx.url, { path: '/deepstream', headers: forged })).status, 401);
    assert.equal((await px.request(ngx.url, { path: '/deepstream', headers: Object.assign({ Authorization: px.basic('alice', 'nope') }, forged) })).status, 401);
    assert.equal(up.requests.length, n, 'a refused request reached the upstream');
  } finally {
    stopNginx(ngx);
    up.server.close();
  }
});

test('variant C (auth_request): the user and data of the auth service are forwarded, the client\'s never', { timeout: 15000 }, async () => {
  const up = await fakeUpstream();
  const asked = [];
  const auth = http.createServer((req, res) => {
    asked.push({ url: req.url, headers: req.headers });
    if (req.headers.authorization === 'Bearer good') {
      res.writeHead(200, { 'X-Auth-User': 'carol', 'X-Auth-User-Data': '{"team":"blue"}', 'Content-Length': 0 });
    } else {
      res.writeHead(403, { 'Content-Length': 0 });
    }
    res.end();
  });
  await new Promise((resolve) => auth.listen(0, '127.0.0.1', resolve));
  let ngx;
  try {
    ngx = await startNginx('hdr-authreq', up.url, ['--auth-request', `http://127.0.0.1:${auth.address().port}/check`]);
    const ok = JSON.parse((await px.request(ngx.url, { path: '/deepstream/?EIO=3&transport=polling', headers: Object.assign({ Authorization: 'Bearer good' }, forged) })).body);
    assert.equal(ok.headers['x-forwarded-user'], 'carol');
    assert.equal(ok.headers['x-forwarded-user-data'], '{"team":"blue"}');
    assert.equal(asked.length, 1);
    assert.equal(asked[0].url, '/check');
    assert.equal(asked[0].headers['x-original-uri'], '/deepstream/?EIO=3&transport=polling');
    const n = up.requests.length;
    assert.equal((await px.request(ngx.url, { path: '/deepstream', headers: forged })).status, 403);
    assert.equal(up.requests.length, n, 'a refused request reached the upstream');
  } finally {
    stopNginx(ngx);
    up.server.close();
    auth.close();
  }
});
