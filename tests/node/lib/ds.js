'use strict';
/*
 * Helpers for tests that drive the real deepstream.io-client-js 1.1.1 library (what they
 * share with ds2.js, for 2.3.4: tests/node/lib/client-common.js).
 *
 * In node, the 1.1.1 client always uses its raw TCP transport (src/tcp/tcp-connection.js),
 * so the URLs are host:port of the server's TCP endpoint (tcpPort); browserClient() builds it
 * as in a browser instead (engine.io on the HTTP port).
 *
 * Environment:
 *   DS_OPEN_URL  host:port of a server with open auth (auth type none)
 *   DS_FILE_URL  host:port of a server with file auth (tests/fixtures/users.yml)
 */
const deepstream = require('deepstream.io-client-js');
const utils = require('deepstream.io-client-js/src/utils/utils');
const defaultOptions = require('deepstream.io-client-js/src/default-options');
const { splitUnit } = require('./wire');
const { clientHelpers } = require('./client-common');

// Every 1.1.1 TcpConnection adds a process 'exit' listener; tests open more than 10 clients.
process.setMaxListeners(100);

/**
 * Creates a client (not logged in). Adds:
 *   client.errors: every 'error' event as {msg, event, topic} (an 'error' listener also stops
 *                  the 1.1.1 library from throwing on errors);
 *   client.wire:   every message the client received, as an array of fields, taken from
 *                  the transport's 'message' event (a private 1.1.1 API: Connection._endpoint).
 */
function create(url, label) {
  const client = deepstream(url);
  client.label = label || 'client';
  client.errors = [];
  client.wire = [];
  client.on('error', (msg, event, topic) => client.errors.push({ msg, event, topic }));
  const endpoint = client._connection && client._connection._endpoint;
  if (!endpoint || typeof endpoint.on !== 'function') {
    throw new Error('deepstream.io-client-js internals changed: no _connection._endpoint');
  }
  endpoint.on('message', (unit) => {
    for (const m of splitUnit(unit)) client.wire.push(m);
  });
  return client;
}

/** closes a client and waits (bounded) until its connection state is CLOSED */
function close(client, timeoutMs = 2000) {
  return new Promise((resolve) => {
    if (!client) return resolve();
    if (client.getConnectionState() === 'CLOSED') return resolve();
    const onState = (state) => {
      if (state === 'CLOSED') finish();
    };
    const timer = setTimeout(() => {
      // last resort: kill the socket so the test process can exit
      try {
        client._connection._endpoint._socket.destroy();
      } catch (e) {
        /* ignore */
      }
      finish();
    }, timeoutMs);
    function finish() {
      clearTimeout(timer);
      client.off('connectionStateChanged', onState);
      resolve();
    }
    client.on('connectionStateChanged', onState);
    try {
      client.close();
    } catch (e) {
      finish();
    }
  });
}

/**
 * deepstream.io-client-js 1.1.1 built as in a browser (utils.isNode = false while it is
 * constructed): engine.io-client 1.8.6 at ws://url/deepstream, polling then WebSocket, instead
 * of raw TCP. options: the client's options (transports, ...); eio: engine.io-client options
 * the 1.1.1 client does not pass on by itself ({ agent, localAddress, extraHeaders }).
 */
function browserClient(url, options, eio) {
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
    return deepstream(url, Object.assign({}, options || {}, eio || {}));
  } finally {
    utils.isNode = savedIsNode;
    for (const key of added) delete defaultOptions[key];
  }
}

const helpers = clientHelpers({
  envHint: ": it must be host:port of the server's TCP endpoint (run scripts/node-tests.sh)",
  create,
  close,
  // (1.1.1's login(cb) would take cb for the auth data: always pass both)
  callLogin: (client, authData, cb) => client.login(authData, cb),
});

module.exports = Object.assign(helpers, {
  deepstream,
  browserClient,
  /** waits until the server closed the connection after a login failure */
  waitServerClose: (client, timeoutMs = 3000) => helpers.waitFor(() => client.getConnectionState() === 'CLOSED', timeoutMs, 'the connection to close'),
});
