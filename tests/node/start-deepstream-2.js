#!/usr/bin/env node
'use strict';
/*
 * Starts the real deepstream.io 2.4.1 server from a deepstream 2.x YAML config file.
 * Must run under Node 8 (uws 10.148.1 only ships prebuilt binaries for Node 8/9/10, and
 * on Node 10 the server dies on the first websocket upgrade, see PROTOCOL.md section 0):
 *
 *   tests/node/node_modules/node-8/bin/node tests/node/start-deepstream-2.js path/to/config.yml
 *
 * deepstream.io 2.4.1 is installed under the npm alias `deepstream.io-2`
 * (tests/node/package.json: "deepstream.io-2": "npm:deepstream.io@2.4.1") so that it can live
 * next to deepstream.io 1.1.1; its own code only uses relative requires and its dependencies
 * (uws, js-yaml, javascript-state-machine, ...), so the alias does not matter to it.
 *
 * This does what `deepstream start --config FILE` does (bin/deepstream-start.js): it hands the
 * file path to the Deepstream class, whose constructor calls src/config/js-yaml-loader.js
 * loadConfig(FILE). That loader parses the YAML (with ${ENV} substitution), merges it over the
 * default options and sets global.deepstreamConfDir to the config file's folder, so relative
 * paths such as ./users.yml and ./permissions.yml resolve against that folder, as with the CLI.
 *
 * Prints `ready` on stdout once the server emits 'started'. Stops on SIGTERM/SIGINT.
 * (Plain ES2017: this file runs on Node 8.)
 */
const path = require('path');
const fs = require('fs');

const configArg = process.argv[2];
if (!configArg) {
  console.error('usage: node-8 start-deepstream-2.js CONFIG.yml');
  process.exit(2);
}
const configPath = path.resolve(configArg);
if (!fs.existsSync(configPath)) {
  console.error('config file not found: ' + configPath);
  process.exit(2);
}

const major = Number(process.versions.node.split('.')[0]);
if (major !== 8) {
  console.error(
    'warning: deepstream.io 2.4.1 needs Node 8 (running ' + process.version + '); ' +
      'use tests/node/node_modules/node-8/bin/node'
  );
}

let Deepstream;
try {
  Deepstream = require('deepstream.io-2');
} catch (err) {
  console.error('cannot load deepstream.io 2.4.1 (npm install in tests/node?): ' + ((err && err.stack) || err));
  process.exit(1);
}

let ds;
try {
  ds = new Deepstream(configPath);
} catch (err) {
  console.error('failed to load config: ' + ((err && err.stack) || err));
  process.exit(1);
}

ds.on('started', () => {
  process.stdout.write('ready\n');
});

ds.on('error', (err) => {
  console.error('deepstream error: ' + ((err && err.stack) || err));
});

process.on('uncaughtException', (err) => {
  // e.g. the 2.4.1 crash on an unparseable message after login (PROTOCOL.md 3.7)
  console.error('uncaught exception: ' + ((err && err.stack) || err));
  process.exit(1);
});

let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  // do not wait for 'stopped' forever
  const force = setTimeout(() => process.exit(0), 1000);
  force.unref();
  try {
    ds.on('stopped', () => process.exit(0));
    ds.stop();
  } catch (err) {
    // stop() throws when the server is already stopped
    process.exit(0);
  }
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

try {
  ds.start();
} catch (err) {
  console.error('failed to start: ' + ((err && err.stack) || err));
  process.exit(1);
}
