'use strict';
/*
 * Runs a real deepstream.io server from a YAML config file, for tests/node/start-deepstream-1.js
 * (deepstream.io 1.1.1, Node 20) and start-deepstream-2.js (deepstream.io 2.4.1, Node 8; so
 * this file is plain ES2017).
 *
 * This does what `deepstream start --config FILE` does: it hands the file path to the Deepstream
 * class, whose constructor calls src/config/js-yaml-loader.js loadConfig(FILE). That loader
 * parses the YAML (with ${ENV} substitution), merges it over the default options and sets
 * global.deepstreamConfDir to the config file's folder, so relative paths such as ./users.yml
 * and ./permissions.yml resolve against that folder, as they do with the real CLI.
 *
 * Prints `ready` on stdout once the server emits 'started'. Stops on SIGTERM/SIGINT.
 */
const path = require('path');
const fs = require('fs');

const describe = (err) => (err && err.stack) || err;

/** usage: the usage line; load(): the Deepstream class (may exit with a message of its own) */
module.exports = function startDeepstream(usage, load) {
  const configArg = process.argv[2];
  if (!configArg) {
    console.error('usage: ' + usage);
    process.exit(2);
  }
  const configPath = path.resolve(configArg);
  if (!fs.existsSync(configPath)) {
    console.error('config file not found: ' + configPath);
    process.exit(2);
  }

  const Deepstream = load();
  let ds;
  try {
    ds = new Deepstream(configPath);
  } catch (err) {
    console.error('failed to load config: ' + describe(err));
    process.exit(1);
  }

  ds.on('started', () => {
    process.stdout.write('ready\n');
  });

  ds.on('error', (err) => {
    console.error('deepstream error: ' + describe(err));
  });

  process.on('uncaughtException', (err) => {
    // e.g. the 2.4.1 crash on an unparseable message after login (PROTOCOL.md 3.7)
    console.error('uncaught exception: ' + describe(err));
    process.exit(1);
  });

  let stopping = false;
  function shutdown() {
    if (stopping) return;
    stopping = true;
    // The TCP server waits for open client sockets before emitting 'close', so do not wait
    // for 'stopped' forever.
    const force = setTimeout(() => process.exit(0), 1000);
    force.unref();
    try {
      ds.on('stopped', () => process.exit(0));
      ds.stop();
    } catch (err) {
      // stop() throws when the server has not finished starting, or is already stopped.
      process.exit(0);
    }
  }
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  try {
    ds.start();
  } catch (err) {
    console.error('failed to start: ' + describe(err));
    process.exit(1);
  }
};
