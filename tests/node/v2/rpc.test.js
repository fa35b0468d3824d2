'use strict';
// RPC with the real deepstream.io-client-js 2.3.4 (websocket), plus raw websocket providers:
// the suite of tests/node/suite/rpc.js in the 2.x dialect.
require('../suite/rpc')(require('../lib/dialect').v2);
