'use strict';
/*
 * What tests/node/lib/ds.js (deepstream.io-client-js 1.1.1) and ds2.js (2.3.4) share: login and
 * open around a library client, and the wire the client received (client.wire, filled by each
 * of them from the library's private transport), in the notation of the captures.
 */
const util = require('./util');

/**
 * spec: {
 *   envHint:   what to say when a URL variable is not set,
 *   create(url, label, options), close(client, timeoutMs): the library's,
 *   callLogin(client, authData, cb): how the library is asked to log in,
 *   ignore(text): received messages wireTexts() leaves out (heartbeat pings)
 * }
 */
function clientHelpers(spec) {
  const ignore = spec.ignore || (() => false);

  /** client.login(authData, cb) -> Promise of the callback's arguments (as an array) */
  function login(client, authData, timeoutMs = 3000) {
    return util.withTimeout(
      new Promise((resolve) => spec.callLogin(client, authData, (...args) => resolve(args))),
      timeoutMs,
      `${client.label}: login(${JSON.stringify(authData)})`
    );
  }

  /** create + login; fails unless login succeeds */
  async function open(url, authData, label, options) {
    const client = spec.create(url, label || (authData && authData.username), options);
    let args;
    try {
      args = await login(client, authData);
    } catch (err) {
      await spec.close(client);
      throw err;
    }
    if (args[0] !== true) {
      await spec.close(client);
      throw new Error(`${client.label}: login failed: ${JSON.stringify(args)}`);
    }
    return client;
  }

  /**
   * opens a logged-in client per name (its label; its username is the name, or
   * usernameOf(name)), all at once; once all are open, adds them to `clients` (for closeAll)
   */
  async function openAll(url, names, clients, usernameOf = (name) => name) {
    const opened = await Promise.all(names.map((name) => open(url, { username: usernameOf(name) }, name)));
    clients.push(...opened);
    return opened;
  }

  function closeAll(clients) {
    return Promise.all(clients.filter(Boolean).map((c) => spec.close(c)));
  }

  /** messages of client.wire in capture notation ('E|A|S|x'), from index `from`, without the ignored ones */
  function wireTexts(client, from = 0) {
    return client.wire
      .slice(from)
      .map((m) => m.join('|'))
      .filter((t) => !ignore(t));
  }

  /** waits until the client received the exact message given in capture notation ('E|A|L|p/.*') */
  function waitWire(client, text, timeoutMs = 3000, from = 0) {
    return util.waitFor(
      () => client.wire.slice(from).some((m) => m.join('|') === text),
      timeoutMs,
      () => `${client.label} to receive ${text} (got ${JSON.stringify(wireTexts(client, from))})`
    );
  }

  /** client errors other than the ones matching `ignoreError(e)` */
  function errorsExcept(client, ignoreError) {
    return client.errors.filter((e) => !ignoreError(e));
  }

  return {
    env: (name) => util.env(name, spec.envHint),
    uid: util.uid,
    sleep: util.sleep,
    waitFor: util.waitFor,
    withTimeout: util.withTimeout,
    create: spec.create,
    login,
    open,
    openAll,
    close: spec.close,
    closeAll,
    wireTexts,
    waitWire,
    errorsExcept,
  };
}

module.exports = { clientHelpers };
