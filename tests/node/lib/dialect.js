'use strict';
/*
 * The two dialects the suites of tests/node/suite run in: what differs between the 1.x suite
 * (tests/node/v1, run by scripts/node-tests.sh: deepstream.io-client-js 1.1.1 over TCP against
 * deepstream.io 1.1.1 or corestream) and the 2.x suite (tests/node/v2, run by
 * scripts/node-tests-v2.sh: 2.3.4 over WebSocket against deepstream.io 2.4.1 or corestream).
 *
 *   const dialect = require('../lib/dialect').v1;   // (not `d`: tests name clients a, b, c, d)
 *   .ds, .raw               the library helpers (ds.js / ds2.js) and the raw client (raw.js / raw-ws.js)
 *   .OPEN(), .FILE()        the servers with open and file auth, as the library wants their address
 *   .client                 the library's version
 *   .rpcAck(name, cid)      the provider's ack as the caller receives it
 *   .isHeartbeat(fields)    a heartbeat ping (2.x: `C|PI`, which raw clients receive between any two messages)
 *   .staleUpdates           the 2.4.1 quirk of PROTOCOL.md 3.4: a read that overtakes writes in
 *                           flight is followed by those writes again (versions <= the one read)
 *
 * Each dialect is built on first use, so a suite loads only its own client library.
 */
const cache = {};

/** the dialect whose client helpers are `lib` (loaded on first use) and whose servers are in env OPEN/FILE */
function dialect(key, lib, raw, OPEN, FILE, fields) {
  if (!cache[key]) {
    const ds = require(lib);
    cache[key] = Object.assign({ ds, raw: require(raw), OPEN: () => ds.env(OPEN), FILE: () => ds.env(FILE) }, fields);
  }
  return cache[key];
}

module.exports = {
  get v1() {
    return dialect('v1', './ds', './raw', 'DS_OPEN_URL', 'DS_FILE_URL', {
      client: '1.1.1',
      rpcAck: (name, cid) => `P|A|${name}|${cid}`,
      isHeartbeat: () => false,
      staleUpdates: false,
    });
  },
  get v2() {
    return dialect('v2', './ds2', './raw-ws', 'DS2_OPEN_URL', 'DS2_FILE_URL', {
      client: '2.3.4',
      rpcAck: (name, cid) => `P|A|REQ|${name}|${cid}`,
      isHeartbeat: (m) => m[0] === 'C' && m[1] === 'PI',
      staleUpdates: true,
    });
  },
};
