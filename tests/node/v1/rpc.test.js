'use strict';
// RPC with the real deepstream.io-client-js 1.1.1 (TCP), plus raw TCP providers: the suite of
// tests/node/suite/rpc.js in the 1.x dialect.
require('../suite/rpc')(require('../lib/dialect').v1);
