'use strict';
// Records and lists with the real deepstream.io-client-js 2.3.4 (websocket), plus raw websocket
// observers: the suite of tests/node/suite/records.js in the 2.x dialect. Write acks and head
// (2.x only): write-ack-head.test.js.
require('../suite/records')(require('../lib/dialect').v2);
