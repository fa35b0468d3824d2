'use strict';
/*
 * Helpers for tests that drive the real deepstream.io-client-js 2.3.4 library (installed as
 * the npm alias `deepstream.io-client-js-2`), which talks to ws://host:port/deepstream.
 *
 * Environment:
 *   DS2_OPEN_URL  host:port of the websocket endpoint of a 2.x server with open auth
 *   DS2_FILE_URL  host:port of the websocket endpoint of a 2.x server with file auth
 *                 (tests/fixtures/users.yml)
 *   DS2_TARGET    deepstream | corestream: which server is under test (some behaviours of the
 *                 reference deepstream.io 2.4.1 can't be tested, e.g. it crashes on a parse error)
 */
const deepstream = require('deepstream.io-client-js-2');

const US = '\x1f';
const RS = '\x1e';

function env(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: it must be host:port of the server's 2.x websocket endpoint (run scripts/node-tests-v2.sh)`);
  }
  return v;
}

const target = () => process.env.DS2_TARGET || 'deepstream';

/** a unique name prefix for one test: `<base>-<random>` (only [a-z0-9-]) */
function uid(base) {
  return `${base}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** polls pred() every 5 ms; rejects with `what` after timeoutMs */
async function waitFor(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(5);
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

function splitUnit(unit) {
  const out = [];
  for (const m of String(unit).split(RS)) {
    if (m.length > 0) out.push(m.split(US));
  }
  return out;
}

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

/** client.login(authData, cb) -> Promise of the callback's arguments (as an array) */
function login(client, authData, timeoutMs = 3000) {
  return withTimeout(
    new Promise((resolve) => {
      if (authData === undefined) client.login((...args) => resolve(args));
      else client.login(authData, (...args) => resolve(args));
    }),
    timeoutMs,
    `${client.label}: login(${JSON.stringify(authData)})`
  );
}

/** create + login; fails unless login succeeds */
async function open(url, authData, label, options) {
  const client = create(url, label || (authData && authData.username), options);
  let args;
  try {
    args = await login(client, authData);
  } catch (err) {
    await close(client);
    throw err;
  }
  if (args[0] !== true) {
    await close(client);
    throw new Error(`${client.label}: login failed: ${JSON.stringify(args)}`);
  }
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

function closeAll(clients) {
  return Promise.all(clients.filter(Boolean).map((c) => close(c)));
}

/**
 * messages of client.wire in capture notation ('E|A|S|x'), from index `from`, without the
 * heartbeat pings (`C|PI` can arrive between any two messages; client.wire has them)
 */
function wireTexts(client, from = 0) {
  return client.wire
    .slice(from)
    .map((m) => m.join('|'))
    .filter((t) => t !== 'C|PI');
}

/** messages of client.sent in capture notation, from index `from`, without the `C|PO` answers */
function sentTexts(client, from = 0) {
  return client.sent
    .slice(from)
    .map((m) => m.join('|'))
    .filter((t) => t !== 'C|PO');
}

/** waits until the client received the exact message given in capture notation ('E|A|L|p/.*') */
function waitWire(client, text, timeoutMs = 3000, from = 0) {
  return waitFor(
    () => client.wire.slice(from).some((m) => m.join('|') === text),
    timeoutMs,
    () => `${client.label} to receive ${text} (got ${JSON.stringify(wireTexts(client, from))})`
  );
}

/** client errors other than the ones matching `ignore(e)` */
function errorsExcept(client, ignore) {
  return client.errors.filter((e) => !ignore(e));
}

module.exports = {
  deepstream,
  env,
  target,
  uid,
  sleep,
  waitFor,
  withTimeout,
  create,
  login,
  open,
  close,
  closeAll,
  wireTexts,
  sentTexts,
  waitWire,
  errorsExcept,
  US,
  RS,
};
