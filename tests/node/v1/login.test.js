'use strict';
// Login with the real deepstream.io-client-js 1.1.1 (TCP): the suite of tests/node/suite/login.js
// in the 1.x dialect, and a login without auth data.
const test = require('node:test');
const assert = require('node:assert/strict');
const dialect = require('../lib/dialect').v1;

require('../suite/login')(dialect);

const { ds, OPEN } = dialect;

test('login open: login() without auth data succeeds too', { timeout: 10000 }, async () => {
  const c = ds.create(OPEN(), 'anonymous');
  try {
    const args = await ds.login(c, undefined);
    assert.deepEqual(args, [true, null]);
    assert.equal(c.getConnectionState(), 'OPEN');
    assert.deepEqual(c.errors, []);
  } finally {
    await ds.close(c);
  }
});
