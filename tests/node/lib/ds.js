'use strict';
/*
 * Helpers for tests that drive the real deepstream.io-client-js 1.1.1 library.
 *
 * In node, the 1.1.1 client always uses its raw TCP transport (src/tcp/tcp-connection.js),
 * so the URLs are host:port of the server's TCP endpoint (tcpPort).
 *
 * Environment:
 *   DS_OPEN_URL  host:port of a server with open auth (auth type none)
 *   DS_FILE_URL  host:port of a server with file auth (tests/fixtures/users.yml)
 */
const deepstream = require('deepstream.io-client-js');

// Every 1.1.1 TcpConnection adds a process 'exit' listener; tests open more than 10 clients.
process.setMaxListeners(100);

const US = '\x1f';
const RS = '\x1e';

function env(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: it must be host:port of the server's TCP endpoint (run scripts/node-tests.sh)`);
  }
  return v;
}

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
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
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
    for (const m of unit.split(RS)) {
      if (m.length > 0) client.wire.push(m.split(US));
    }
  });
  return client;
}

/** client.login(authData, cb) -> Promise of the callback's arguments (as an array) */
function login(client, authData, timeoutMs = 3000) {
  return withTimeout(
    new Promise((resolve) => {
      client.login(authData, (...args) => resolve(args));
    }),
    timeoutMs,
    `${client.label}: login(${JSON.stringify(authData)})`
  );
}

/** create + login; fails unless login succeeds */
async function open(url, authData, label) {
  const client = create(url, label || (authData && authData.username));
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

function closeAll(clients) {
  return Promise.all(clients.filter(Boolean).map((c) => close(c)));
}

/** messages of client.wire in capture notation ('E|A|S|x'), from index `from` */
function wireTexts(client, from = 0) {
  return client.wire.slice(from).map((m) => m.join('|'));
}

/** waits until the client received the exact message given in capture notation ('E|A|L|p/.*') */
function waitWire(client, text, timeoutMs = 3000, from = 0) {
  return waitFor(
    () => client.wire.slice(from).some((m) => m.join('|') === text),
    timeoutMs,
    `${client.label} to receive ${text} (got ${JSON.stringify(wireTexts(client, from))})`
  );
}

module.exports = {
  deepstream,
  env,
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
  waitWire,
};
