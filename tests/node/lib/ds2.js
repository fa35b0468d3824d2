'use strict';
/*
 * Helpers for tests that drive the real deepstream.io-client-js 2.3.4 library (installed as
 * the npm alias `deepstream.io-client-js-2`), which talks to ws://host:port/deepstream (what
 * they share with ds.js, for 1.1.1: tests/node/lib/client-common.js).
 *
 * Environment:
 *   DS2_OPEN_URL  host:port of the websocket endpoint of a 2.x server with open auth
 *   DS2_FILE_URL  host:port of the websocket endpoint of a 2.x server with file auth
 *                 (tests/fixtures/users.yml)
 *   DS2_TARGET    deepstream | corestream: which server is under test (some behaviours of the
 *                 reference deepstream.io 2.4.1 can't be tested, e.g. it crashes on a parse error)
 */
const deepstream = require('deepstream.io-client-js-2');
const { US, RS, splitUnit } = require('./wire');
const util = require('./util');
const { clientHelpers } = require('./client-common');

const target = () => process.env.DS2_TARGET || 'deepstream';

/** hooks one ws endpoint of the client: records received and sent messages */
function hookEndpoint(client, endpoint) {
  endpoint.on('message', (data) => {
    for (const m of splitUnit(data)) client.wire.push(m);
  });
  const send = endpoint.send;
  endpoint.send = function (data, ...rest) {
    for (const m of splitUnit(data)) client.sent.push(m);
    return send.call(this, data, ...rest);
  };
  endpoint.on('close', () => {
    client.endpointClosed = true;
  });
}

/**
 * Creates a client (not logged in). Adds:
 *   client.errors: every 'error' event as {msg, event, topic} (an 'error' listener also stops
 *                  the library from logging/throwing);
 *   client.wire:   every message the client received, as an array of fields;
 *   client.sent:   every message the client sent, as an array of fields.
 * Both are taken from the `ws` endpoint (a private API: client._connection._endpoint, and
 * Connection#_createEndpoint for the endpoints of later reconnections).
 */
function create(url, label, options) {
  const client = deepstream(url, Object.assign({ silentDeprecation: true }, options || {}));
  client.label = label || 'client';
  client.errors = [];
  client.wire = [];
  client.sent = [];
  client.endpointClosed = false;
  client.on('error', (msg, event, topic) => client.errors.push({ msg, event, topic }));
  const conn = client._connection;
  if (!conn || !conn._endpoint || typeof conn._endpoint.on !== 'function' || typeof conn._createEndpoint !== 'function') {
    throw new Error('deepstream.io-client-js 2.x internals changed: no _connection._endpoint');
  }
  hookEndpoint(client, conn._endpoint);
  const createEndpoint = conn._createEndpoint;
  conn._createEndpoint = function () {
    createEndpoint.call(this);
    client.endpointClosed = false;
    hookEndpoint(client, this._endpoint);
  };
  return client;
}

/**
 * closes a client and waits (bounded) until its websocket is closed. (The 2.x client's close()
 * sets the state CLOSED at once and starts the websocket close handshake.)
 */
function close(client, timeoutMs = 2000) {
  return new Promise((resolve) => {
    if (!client) return resolve();
    const conn = client._connection;
    const endpoint = conn && conn._endpoint;
    try {
      client.close();
    } catch (e) {
      /* ignore */
    }
    if (!endpoint || endpoint.readyState === 3 /* CLOSED */) return resolve();
    const timer = setTimeout(() => {
      // last resort: kill the socket so the test process can exit
      try {
        endpoint.terminate();
      } catch (e) {
        /* ignore */
      }
      resolve();
    }, timeoutMs);
    endpoint.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** messages of client.sent in capture notation, from index `from`, without the `C|PO` answers */
function sentTexts(client, from = 0) {
  return client.sent
    .slice(from)
    .map((m) => m.join('|'))
    .filter((t) => t !== 'C|PO');
}

/**
 * waits until the server closed the connection after a login failure: the socket is closed, the
 * client does not reconnect (its state is CLOSED)
 */
async function waitServerClose(client, timeoutMs = 3000) {
  await util.waitFor(() => client.endpointClosed, timeoutMs, 'the server to close the connection');
  await util.sleep(100);
  if (client.getConnectionState() !== 'CLOSED') throw new Error(`${client.label}: state ${client.getConnectionState()} after the server closed the connection`);
}

module.exports = Object.assign(
  clientHelpers({
    envHint: ": it must be host:port of the server's 2.x websocket endpoint (run scripts/node-tests-v2.sh)",
    create,
    close,
    callLogin: (client, authData, cb) => (authData === undefined ? client.login(cb) : client.login(authData, cb)),
    // `C|PI` can arrive between any two messages: client.wire has them, wireTexts() not
    ignore: (t) => t === 'C|PI',
  }),
  { deepstream, target, sentTexts, waitServerClose, US, RS }
);
