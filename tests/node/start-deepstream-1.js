#!/usr/bin/env node
'use strict';
/*
 * Starts the real deepstream.io 1.1.1 server from a deepstream YAML config file,
 * on Node 20.
 *
 *   node tests/node/start-deepstream-1.js path/to/config.yml
 *
 * The package's CLI (bin/deepstream) crashes on Node 20 (bin/pid-helper.js calls
 * os.tmpDir(), which no longer exists). This script does what `deepstream start
 * --config FILE` does without the pid helper: it hands the file path to the
 * Deepstream class, whose constructor calls src/config/js-yaml-loader.js
 * loadConfig(FILE). That loader parses the YAML (with ${ENV} substitution), merges it
 * over the default options and sets global.deepstreamConfDir to the config file's
 * folder, so relative paths such as ./users.yml and ./permissions.yml resolve
 * against that folder, as they do with the real CLI.
 *
 * Prints `ready` on stdout once the server emits 'started'. Stops on SIGTERM/SIGINT.
 */
const path = require('path');
const fs = require('fs');

const configArg = process.argv[2];
if (!configArg) {
  console.error('usage: node start-deepstream-1.js CONFIG.yml');
  process.exit(2);
}
const configPath = path.resolve(configArg);
if (!fs.existsSync(configPath)) {
  console.error('config file not found: ' + configPath);
  process.exit(2);
}

const Deepstream = require('deepstream.io');

let ds;
try {
  ds = new Deepstream(configPath);
} catch (err) {
  console.error('failed to load config: ' + (err && err.stack || err));
  process.exit(1);
}

ds.on('started', () => {
  process.stdout.write('ready\n');
});

ds.on('error', (err) => {
  console.error('deepstream error: ' + (err && err.stack || err));
});

process.on('uncaughtException', (err) => {
  console.error('uncaught exception: ' + (err && err.stack || err));
  process.exit(1);
});

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  // The TCP server waits for open client sockets before emitting 'close', so do not
  // wait for 'stopped' forever.
  const force = setTimeout(() => process.exit(0), 1000);
  force.unref();
  try {
    ds.on('stopped', () => process.exit(0));
    ds.stop();
  } catch (err) {
    // stop() throws when the server has not finished starting.
    process.exit(0);
  }
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

try {
  ds.start();
} catch (err) {
  console.error('failed to start: ' + (err && err.stack || err));
  process.exit(1);
}
