'use strict';
/*
 * Helpers for the tests of corestream behind nginx (tests/node/nginx, run by
 * scripts/nginx-tests.sh, which exports the addresses below).
 *
 *   NGINX_HTTP_URL        host:port of nginx's http server in front of the two open nodes
 *   NGINX_TCP_URL         host:port of nginx's stream server in front of their TCP ports
 *   NGINX_NODES_HTTP      the two nodes' HTTP ports, direct (host:port,host:port)
 *   NGINX_NODES_TCP       their TCP ports (tcpProxyProtocol: true), direct
 *   NGINX_BASIC_URL       nginx with basic auth (alice:secret, bob:builder) in front of the
 *                         proxy-header auth node
 *   NGINX_AUTHREQ_URL     nginx with auth_request in front of the same node
 *   NGINX_AUTH_SERVICE    host:port the auth_request test's auth service must listen on
 *   NGINX_AUTH_NODE_HTTP  the proxy-header auth node's HTTP port, direct
 *   NGINX_AUTH_NODE_TCP   its TCP port, direct
 *   NGINX_STRIP_URL       nginx without auth (the user headers removed) in front of it
 *   NGINX_AUTH_NODE_ERROR set when that node did not start (its output)
 *   NGINX_PROXY_BIND      the address nginx connects to the nodes from (the nodes'
 *                         trustedProxies)
 *   NGINX_TEST_TMP        a folder where tests may start nginx instances of their own
 *                         (nginx-* folders there are stopped by the runner at the end)
 */
const http = require('http');
const deepstream = require('deepstream.io-client-js');
const utils = require('deepstream.io-client-js/src/utils/utils');
const defaultOptions = require('deepstream.io-client-js/src/default-options');
const raw = require('./raw-ws');

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run scripts/nginx-tests.sh)`);
  return v;
}

function nodesHttp() {
  return env('NGINX_NODES_HTTP').split(',');
}

/** fails the calling test at once when the proxy-header auth node is not running */
function requireAuthNode() {
  const error = process.env.NGINX_AUTH_NODE_ERROR;
  if (error) {
    throw new Error(`the node with auth type proxy-header did not start (this corestream has no proxy-header auth yet?):\n${error}`);
  }
  return env('NGINX_AUTH_NODE_HTTP');
}

function splitHostPort(hostport) {
  const i = hostport.lastIndexOf(':');
  return { host: hostport.slice(0, i), port: Number(hostport.slice(i + 1)) };
}

/**
 * One HTTP/1.1 request on a new connection.
 * opts: { method, path, headers, body, localAddress, timeoutMs }
 * -> { status, headers, body }
 */
function request(hostport, opts = {}) {
  const { host, port } = splitHostPort(hostport);
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

/** Prometheus text of /metrics -> Map of 'name{labels}' -> number */
async function metrics(hostport) {
  const res = await request(hostport, { path: '/metrics' });
  if (res.status !== 200) throw new Error(`GET http://${hostport}/metrics: ${res.status}`);
  const out = new Map();
  for (const line of res.body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** corestream_connections_total{transport="engineio"} of each node, direct */
async function engineioTotals() {
  return Promise.all(nodesHttp().map(async (n) => (await metrics(n)).get('corestream_connections_total{transport="engineio"}')));
}

/** an engine.io (protocol 3) polling handshake: -> { status, sid, body } */
async function eioHandshake(hostport, opts = {}) {
  const res = await request(hostport, {
    path: `/deepstream/?EIO=3&transport=polling&t=${Date.now().toString(36)}`,
    headers: opts.headers,
    localAddress: opts.localAddress,
  });
  const m = /"sid":"([^"]+)"/.exec(res.body);
  return { status: res.status, sid: m ? m[1] : null, body: res.body };
}

/** POSTs one engine.io packet ('6' noop, '1' close) to a session on a node, direct */
function eioPost(hostport, sid, packet) {
  return request(hostport, {
    method: 'POST',
    path: `/deepstream/?EIO=3&transport=polling&sid=${encodeURIComponent(sid)}`,
    headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
    body: `${packet.length}:${packet}`,
  });
}

/**
 * Which node holds the engine.io session `sid`: a noop packet posted to each node directly is
 * answered 200 only by the node that has it ("Session ID unknown" elsewhere). -> the indexes.
 * Post only while the session's client is not posting itself (engine.io refuses overlapping
 * posts).
 */
async function nodesWithSession(sid) {
  const replies = await Promise.all(nodesHttp().map((n) => eioPost(n, sid, '6')));
  return replies.map((r, i) => (r.status === 200 ? i : -1)).filter((i) => i >= 0);
}

/** the engine.io socket id of a browser client, and its transport's name */
function eioSocket(client) {
  const socket = client._connection._endpoint;
  return { id: socket && socket.id, transport: socket && socket.transport && socket.transport.name };
}

/**
 * deepstream.io-client-js 1.1.1 built as in a browser (engine.io-client 1.8.6 at
 * ws://url/deepstream, polling then WebSocket), like tests/node/v1/engineio.test.js does.
 * options: the client's options (transports, ...); eio: engine.io-client options the 1.1.1
 * client does not pass on by itself ({ agent, localAddress, extraHeaders }).
 * Adds client.errors (every 'error' event) and client.states (every connection state).
 */
function browserClient(url, label, options, eio) {
  const savedIsNode = utils.isNode;
  const added = [];
  utils.isNode = false;
  // The 1.1.1 client keeps only the option keys it has defaults for (Client#_getOptions):
  // declare the engine.io ones for the time of the constructor.
  for (const key of Object.keys(eio || {})) {
    if (!(key in defaultOptions)) {
      defaultOptions[key] = undefined;
      added.push(key);
    }
  }
  try {
    const client = deepstream(url, Object.assign({}, options || {}, eio || {}));
    client.label = label;
    client.errors = [];
    client.states = [];
    client.on('error', (msg, event, topic) => client.errors.push({ msg, event, topic }));
    client.on('connectionStateChanged', (state) => client.states.push(state));
    created.add(client);
    return client;
  } finally {
    utils.isNode = savedIsNode;
    for (const key of added) delete defaultOptions[key];
  }
}

const created = new Set();

/**
 * Closes every browserClient of this process that is not closed yet. For test.after(): a
 * client left reconnecting after a failed test keeps the test file's process alive forever.
 */
async function closeLeftovers(timeoutMs = 2000) {
  const open = [...created].filter((c) => c.getConnectionState() !== 'CLOSED');
  created.clear();
  // Long polls a closed engine.io client left in flight can keep the process up for as long
  // as the server holds them (the ping interval, 25 s): after a failure, don't wait for them.
  if (open.length > 0 || process.exitCode) {
    setTimeout(() => process.exit(), 5000).unref();
  }
  await Promise.all(
    open.map(
      (c) =>
        new Promise((resolve) => {
          const timer = setTimeout(finish, timeoutMs);
          function finish() {
            clearTimeout(timer);
            try {
              c._connection._endpoint.close(); // the engine.io socket, whatever state the client is in
            } catch (e) {
              /* ignore */
            }
            resolve();
          }
          c.on('connectionStateChanged', (state) => state === 'CLOSED' && finish());
          try {
            c.close();
          } catch (e) {
            finish();
          }
        })
    )
  );
}

/** an http.Agent whose connections come from `localAddress` (for engine.io polling) */
function agentFrom(localAddress) {
  return new http.Agent({ localAddress, keepAlive: false });
}

/**
 * raw-ws.js's RawWsClient opened with extra `ws` options (headers, localAddress, ...).
 * RawWsClient opens its socket in its constructor with fixed options, so this builds the same
 * object (the fields and handlers of RawWsClient's constructor) around a socket of our own.
 */
function rawWsClient(url, opts = {}, wsOptions = {}) {
  const c = Object.create(raw.RawWsClient.prototype);
  c.url = raw.wsUrl(url);
  c.label = opts.label || 'raw-ws';
  c.autoPong = opts.autoPong !== false;
  c.received = [];
  c.receivedAt = [];
  c.frames = [];
  c.sentAt = [];
  c.closed = false;
  c.closeCode = null;
  c.closeReason = null;
  c.closedAt = null;
  c.error = null;
  c.unexpectedStatus = null;
  c._buffer = '';
  c._waiters = [];
  c.ws = new raw.WebSocket(c.url, Object.assign({ perMessageDeflate: false }, wsOptions));
  c.connected = new Promise((resolve, reject) => {
    c.ws.once('open', resolve);
    c.ws.once('error', reject);
    c.ws.once('close', () => reject(new Error(`${c.label}: closed before open`)));
  });
  c.connected.catch(() => {});
  c.ws.on('message', (data) => c._onFrame(String(data)));
  c.ws.on('error', (err) => {
    c.error = err;
    const m = /Unexpected server response: (\d+)/.exec(String(err && err.message));
    if (m) c.unexpectedStatus = Number(m[1]);
  });
  c.ws.on('close', (code, reason) => {
    c.closed = true;
    c.closeCode = code;
    c.closeReason = String(reason || '');
    c.closedAt = Date.now();
    c._check();
  });
  return c;
}

function basic(user, password) {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}

module.exports = {
  env,
  nodesHttp,
  requireAuthNode,
  request,
  metrics,
  engineioTotals,
  eioHandshake,
  eioPost,
  nodesWithSession,
  eioSocket,
  browserClient,
  closeLeftovers,
  agentFrom,
  rawWsClient,
  basic,
};
