#!/usr/bin/env node
'use strict';
/*
 * Starts the real deepstream.io 2.4.1 server from a deepstream 2.x YAML config file
 * (tests/node/lib/start-deepstream.js). Must run under Node 8 (uws 10.148.1 only ships prebuilt
 * binaries for Node 8/9/10, and on Node 10 the server dies on the first websocket upgrade, see
 * PROTOCOL.md section 0):
 *
 *   tests/node/node_modules/node-8/bin/node tests/node/start-deepstream-2.js path/to/config.yml
 *
 * deepstream.io 2.4.1 is installed under the npm alias `deepstream.io-2`
 * (tests/node/package.json: "deepstream.io-2": "npm:deepstream.io@2.4.1") so that it can live
 * next to deepstream.io 1.1.1; its own code only uses relative requires and its dependencies
 * (uws, js-yaml, javascript-state-machine, ...), so the alias does not matter to it.
 *
 * Prints `ready` on stdout once started; stops on SIGTERM/SIGINT. (Plain ES2017: Node 8.)
 */
require('./lib/start-deepstream')('node-8 start-deepstream-2.js CONFIG.yml', () => {
  const major = Number(process.versions.node.split('.')[0]);
  if (major !== 8) {
    console.error(
      'warning: deepstream.io 2.4.1 needs Node 8 (running ' + process.version + '); ' +
        'use tests/node/node_modules/node-8/bin/node'
    );
  }
  try {
    return require('deepstream.io-2');
  } catch (err) {
    console.error('cannot load deepstream.io 2.4.1 (npm install in tests/node?): ' + ((err && err.stack) || err));
    process.exit(1);
  }
});
