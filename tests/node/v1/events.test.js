'use strict';
// Events with the real deepstream.io-client-js 1.1.1 (TCP): the suite of tests/node/suite/events.js
// in the 1.x dialect.
require('../suite/events')(require('../lib/dialect').v1);
