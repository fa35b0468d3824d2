'use strict';
// Wire-level checks with the raw client of a dialect (tests/node/lib/dialect.js: raw.js over
// TCP, raw-ws.js over websocket) that both protocols share. Run by tests/node/v1/raw-wire.test.js
// and tests/node/v2/raw-wire.test.js, which add the checks of their own protocol.
// Reference captures: captures/v1 and captures/v2, raw-handshake-open-auth.log.
const test = require('node:test');
const assert = require('node:assert/strict');
const { US, RS } = require('../lib/wire');

module.exports = function rawWireSuite(dialect) {
  const { ds, raw, OPEN } = dialect;

  test('raw: handshake and open-auth login (websocket: one message per text frame)', { timeout: 10000 }, async () => {
    const c = await raw.connect(OPEN(), { label: 'raw-alice' });
    try {
      await c.waitForMessage('C|CH');
      // 1.x: host:port of the TCP endpoint; 2.x: the websocket URL, ws://host:port/deepstream
      c.send('C', 'CHR', c.challengeUrl());
      await c.waitForMessage('C|A');
      c.send('A', 'REQ', JSON.stringify({ username: ds.uid('alice') }));
      await c.waitForMessage('A|A');
      assert.deepEqual(c.texts(), ['C|CH', 'C|A', 'A|A']);
      if (c.frames) {
        assert.deepEqual(
          c.frames.map((f) => f.text).filter((f) => f !== 'C' + US + 'PI' + RS),
          ['C' + US + 'CH' + RS, 'C' + US + 'A' + RS, 'A' + US + 'A' + RS]
        );
      }
    } finally {
      await c.close();
    }
  });
};
