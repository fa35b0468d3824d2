'use strict';
// Events with the real deepstream.io-client-js 2.3.4 (websocket): the suite of tests/node/suite/events.js
// in the 2.x dialect.
require('../suite/events')(require('../lib/dialect').v2);
