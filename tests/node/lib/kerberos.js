'use strict';
/*
 * Helpers of the Kerberos tests (tests/node/kerberos, run by scripts/kerberos-tests.sh, which
 * makes the realm and exports):
 *
 *   KRB_NGINX_URL          host:port of nginx (TLS, auth_request to the SPNEGO validator)
 *   KRB_NODE_HTTP          the corestream node's HTTP port, direct (auth type proxy-header)
 *   KRB_VALIDATOR_FULL     a validator that forwards whole principals (--user principal)
 *   KRB_REALM              the realm; KRB_ALICE_PASSWORD, KRB_BOB_PASSWORD, KRB_CAROL_PASSWORD
 *                          its users' passwords
 *   KRB_WORK               a folder for the tests' ticket caches
 *   KRB_TOKEN_TOOL, KRB_PYTHON   tests/kerberos/negotiate-token.py and the python3 to run it
 *   KRB5_CONFIG            the realm's krb5.conf (kinit and the token tool read it)
 *   NODE_EXTRA_CA_CERTS    nginx's self-made certificate, so the clients' TLS checks pass
 */
const fs = require('fs');
const https = require('https');
const path = require('path');
const { execFileSync } = require('child_process');
const util = require('./util');

const env = (name) => util.env(name, ' (run scripts/kerberos-tests.sh)');

let caches = 0;

/**
 * A ticket for `user` (alice or bob) in a cache file of its own, valid for `lifetime` (kinit's
 * -l: '1h', '5s'). -> the cache's path (KRB5CCNAME)
 */
function kinit(user, lifetime = '1h') {
  const password = env(`KRB_${user.toUpperCase()}_PASSWORD`);
  const cache = path.join(env('KRB_WORK'), `${user}-${process.pid}-${++caches}.cc`);
  execFileSync('kinit', ['-l', lifetime, '-c', cache, user], {
    input: `${password}\n`,
    stdio: ['pipe', 'ignore', 'pipe'],
    env: Object.assign({}, process.env, { PATH: `${process.env.PATH}:/usr/sbin` }),
  });
  return cache;
}

/** a ticket for the backend principal `name` from its keytab (scripts/kdc.sh --keytab-user): -> the cache */
function kinitKeytab(name) {
  const cache = path.join(env('KRB_WORK'), `${name}-${process.pid}-${++caches}.cc`);
  const keytab = path.join(env('KRB_WORK'), 'kdc', `${name}.keytab`);
  execFileSync('kinit', ['-k', '-t', keytab, '-c', cache, name], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: Object.assign({}, process.env, { PATH: `${process.env.PATH}:/usr/sbin` }),
  });
  return cache;
}

/** `count` Authorization header values, each a fresh Negotiate token from `cache` for `service` */
function negotiateMany(cache, count, service = 'HTTP@localhost') {
  const out = execFileSync(env('KRB_PYTHON'), [env('KRB_TOKEN_TOOL'), service, String(count)], {
    env: Object.assign({}, process.env, { KRB5CCNAME: cache }),
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  return out.toString().trim().split('\n').map((token) => `Negotiate ${token}`);
}

/** the Authorization header value: a fresh Negotiate token from `cache` for `service` */
function negotiate(cache, service = 'HTTP@localhost') {
  return negotiateMany(cache, 1, service)[0];
}

/** One HTTPS request on a new connection (a 101 closes it at once): -> { status, headers, body } */
function request(hostport, opts = {}) {
  const { host, port } = util.parseHostPort(hostport);
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host, port, method: opts.method || 'GET', path: opts.path || '/', headers: opts.headers || {}, agent: false, servername: 'localhost' },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      }
    );
    req.setTimeout(opts.timeoutMs || 5000, () => req.destroy(new Error(`https://${hostport}${opts.path}: timed out`)));
    // a WebSocket upgrade that went through: the status is all a test wants
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: '' });
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** removes the tests' ticket caches */
function cleanCaches() {
  const dir = env('KRB_WORK');
  for (const name of fs.readdirSync(dir)) {
    if (name.endsWith('.cc') && name.includes(`-${process.pid}-`)) fs.rmSync(path.join(dir, name), { force: true });
  }
}

module.exports = { env, kinit, kinitKeytab, negotiate, negotiateMany, request, cleanCaches };
