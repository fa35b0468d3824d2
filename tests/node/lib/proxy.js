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
const util = require('./util');
const ds = require('./ds');

const env = (name) => util.env(name, ' (run scripts/nginx-tests.sh)');
const { request, metrics } = util;

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
 * deepstream.io-client-js 1.1.1 built as in a browser (ds.browserClient: engine.io-client 1.8.6
 * at ws://url/deepstream, polling then WebSocket), like tests/node/v1/engineio.test.js does.
 * options: the client's options (transports, ...); eio: engine.io-client options the 1.1.1
 * client does not pass on by itself ({ agent, localAddress, extraHeaders }).
 * Adds client.errors (every 'error' event) and client.states (every connection state).
 */
function browserClient(url, label, options, eio) {
  const client = ds.browserClient(url, options, eio);
  client.label = label;
  client.errors = [];
  client.states = [];
  client.on('error', (msg, event, topic) => client.errors.push({ msg, event, topic }));
  client.on('connectionStateChanged', (state) => client.states.push(state));
  created.add(client);
  return client;
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

function basic(user, password) {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}

/** the headers of a WebSocket upgrade request (a fixed key), with `extra` added */
function upgradeHeaders(extra) {
  return Object.assign(
    {
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': Buffer.from('0123456789abcdef').toString('base64'),
    },
    extra || {}
  );
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
  basic,
  upgradeHeaders,
};
