#!/usr/bin/env node
'use strict';
/*
 * Starts the real deepstream.io 1.1.1 server from a deepstream YAML config file, on Node 20
 * (tests/node/lib/start-deepstream.js).
 *
 *   node tests/node/start-deepstream-1.js path/to/config.yml
 *
 * The package's CLI (bin/deepstream) crashes on Node 20 (bin/pid-helper.js calls
 * os.tmpDir(), which no longer exists): this does what `deepstream start --config FILE` does
 * without the pid helper. Prints `ready` on stdout once started; stops on SIGTERM/SIGINT.
 */
require('./lib/start-deepstream')('node start-deepstream-1.js CONFIG.yml', () => require('deepstream.io'));
