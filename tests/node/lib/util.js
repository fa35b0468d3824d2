'use strict';
/*
 * Small helpers every test file and helper module of tests/node shares: names, waiting, time
 * limits, host:port strings, free ports, HTTP requests. Nothing here knows deepstream.
 */
const http = require('http');
const net = require('net');

/** env(name, hint) -> the variable's value; throws `<name> is not set<hint>` when it is empty */
function env(name, hint = '') {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set${hint}`);
  return v;
}

/** a unique name prefix for one test: `<base>-<random>` (only [a-z0-9-]) */
function uid(base) {
  return `${base}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const describeWhat = (what) => (typeof what === 'function' ? what() : what);

/** polls pred() every 5 ms; rejects with `what` (a string, or a function giving one) after timeoutMs */
async function waitFor(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${describeWhat(what)}`);
    await sleep(5);
  }
}

/** polls (async) pred() every `every` ms; rejects with `what` after timeoutMs */
async function eventually(pred, timeoutMs, what, every = 20) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${describeWhat(what)}`);
    await sleep(every);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** calls fn(cb) -> Promise of the arguments of cb's first call (as an array); rejects after timeoutMs */
function callbackArgs(fn, what, timeoutMs = 4000) {
  return withTimeout(new Promise((resolve) => fn((...args) => resolve(args))), timeoutMs, what);
}

/**
 * calls fn(cb) -> Promise of {args, ms, out}: the arguments of cb's first call, the time from
 * the call to it, and out.calls, which counts every call of cb (also later ones)
 */
function firstCallback(fn, what, timeoutMs) {
  const t0 = Date.now();
  const out = { calls: 0 };
  const p = new Promise((resolve) => {
    fn(function () {
      out.calls++;
      if (out.calls === 1) resolve({ args: Array.from(arguments), ms: Date.now() - t0, out });
    });
  });
  return withTimeout(p, timeoutMs, what);
}

/** 'host:port' (or scheme://host:port/path) -> {host, port} */
function parseHostPort(url) {
  const s = String(url).replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
  const i = s.lastIndexOf(':');
  if (i < 0) throw new Error('expected host:port, got ' + url);
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

/** n distinct free loopback ports, chosen by the kernel (all bound at once, then released) */
async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', resolve);
      });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** resolves once something accepts connections on 127.0.0.1:port; rejects after timeoutMs */
async function waitPort(port, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.createConnection({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open`);
    await sleep(50);
  }
}

/**
 * One HTTP/1.1 request on a new connection.
 * opts: { method, path, headers, body, localAddress, timeoutMs }
 * -> { status, headers, body }
 */
function request(hostport, opts = {}) {
  const { host, port } = parseHostPort(hostport);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host,
        port,
        method: opts.method || 'GET',
        path: opts.path || '/',
        headers: opts.headers || {},
        localAddress: opts.localAddress,
        agent: false,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      }
    );
    req.setTimeout(opts.timeoutMs || 5000, () => req.destroy(new Error(`${opts.method || 'GET'} http://${hostport}${opts.path}: timed out`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Prometheus text of a node's /metrics -> Map of 'name{labels}' -> number */
async function metrics(hostport, timeoutMs) {
  const res = await request(hostport, { path: '/metrics', timeoutMs });
  if (res.status !== 200) throw new Error(`GET http://${hostport}/metrics: ${res.status}`);
  const out = new Map();
  for (const line of res.body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

module.exports = {
  env,
  uid,
  sleep,
  waitFor,
  eventually,
  withTimeout,
  callbackArgs,
  firstCallback,
  parseHostPort,
  freePorts,
  waitPort,
  request,
  metrics,
};
