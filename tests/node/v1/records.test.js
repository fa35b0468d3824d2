'use strict';
// Records and lists with the real deepstream.io-client-js 1.1.1 (TCP), plus raw TCP observers:
// the suite of tests/node/suite/records.js in the 1.x dialect.
require('../suite/records')(require('../lib/dialect').v1);
