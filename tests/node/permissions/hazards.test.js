'use strict';
// Inputs that crash a reference server, each on a server of its own (tests/node/lib/
// permissions.js startServer), so that the crash is observed instead of breaking the other
// scenarios:
//
// 1. No path of the section defines the rule type the message needs (the validator only
//    requires a "*" path, not every rule type on it). Both references look the rule up, get
//    null, and throw `TypeError: Cannot read propert(y|ies) ... 'regexp' ... of null` inside
//    the socket's data handler: the process exits (status 1 here: the uncaughtException
//    handler of tests/node/lib/start-deepstream.js), the sender gets no reply. For R|CR the
//    same happens in the record handler's CREATE check.
//    corestream must not crash: it either refuses the file at start (exit status 2, naming
//    the section) or denies the message (MESSAGE_DENIED, the shape of the other denials).
// 2. An emit without a data field (`E|EVT|price/x`) on a path whose publish rule reads data:
//    1.1.1 calls convertTyped(undefined) and crashes (`Cannot read properties of undefined
//    (reading 'charAt')`); 2.4.1 runs the rule with data undefined, which throws:
//    `E|E|MESSAGE_PERMISSION_ERROR|price/x|EVT`. corestream is expected to answer like 2.4.1
//    for both client generations.
const test = require('node:test');
const assert = require('node:assert/strict');
const perm = require('../lib/permissions');
const { uid, sleep, waitFor } = require('../lib/util');

const TARGET = perm.target();
const REFERENCE = TARGET !== 'corestream';

function rules(change) {
  const r = {
    record: { '*': { create: true, read: true, write: true, delete: true, listen: true } },
    event: { '*': { publish: true, subscribe: true, listen: true } },
    rpc: { '*': { provide: true, request: true } },
  };
  if (perm.rulesDialect() === 'v2') r.presence = { '*': { allow: true } };
  change(r);
  return JSON.stringify(r, null, 1);
}

/** starts a server with `rulesText`; fn(server) runs with it, then it is stopped */
async function withServer(rulesText, label, fn) {
  const server = await perm.startServer(rulesText, label);
  try {
    return await fn(server);
  } finally {
    await server.stop();
  }
}

/**
 * sends `text` on raw client c; resolves with {replies, exited}: the messages received within
 * waitMs (or until the server exited)
 */
async function sendAndWatch(server, c, text, waitMs = 1000) {
  const from = c.received.length;
  c.sendText(text);
  try {
    await waitFor(() => server.state === 'exited' || c.texts(from).length > 0, waitMs, 'a reply or an exit');
  } catch (e) {
    /* neither: replies stays empty */
  }
  await sleep(150);
  return { replies: c.texts(from), exited: server.state === 'exited' };
}

const MISSING = [
  {
    what: 'event publish',
    change: (r) => {
      r.event['*'] = { subscribe: true, listen: true };
      r.event['other/*'] = { publish: true };
    },
    section: 'event',
    message: (name) => `E|EVT|${name}|Sx`,
    denied: (name) => [`E|E|MESSAGE_DENIED|${name}|EVT|Sx`],
  },
  {
    what: 'record create (the check after R|CR)',
    change: (r) => {
      r.record['*'] = { read: true, write: true, delete: true, listen: true };
      r.record['other/*'] = { create: true };
    },
    section: 'record',
    message: (name) => `R|CR|${name}`,
    denied: (name) => [`R|E|MESSAGE_DENIED|${name}|C`],
  },
];

for (const m of MISSING) {
  const expect = REFERENCE ? 'the reference throws and the process exits (reference crash)' : 'no crash: refused at start (exit 2) or MESSAGE_DENIED';
  test(`rule type missing on every matching path, ${m.what}: ${expect}`, { timeout: 20000 }, () =>
    withServer(rules(m.change), `missing-${m.section}`, async (server) => {
      if (!REFERENCE && server.state === 'exited') {
        assert.equal(server.exitStatus.code, 2, server.output());
        assert.ok(server.stderr().includes(m.section), `stderr does not name section ${m.section}:\n${server.stderr()}`);
        return;
      }
      assert.equal(server.state, 'ready', server.output());
      await perm.session(async (clients, raws) => {
        for (const genName of perm.generations()) {
          const c = await server.gen(genName).rawOpen('alice', raws);
          const name = `nope/${uid('m')}`;
          const { replies, exited } = await sendAndWatch(server, c, `${m.message(name)}+`);
          if (REFERENCE) {
            assert.ok(exited, `the reference survived; replies ${JSON.stringify(replies)}`);
            assert.deepEqual(replies, []);
            assert.equal(server.exitStatus.code, 1);
            assert.match(server.stderr(), /uncaught exception: TypeError: Cannot read propert(y|ies).*'regexp'/);
            return;
          }
          assert.deepEqual(replies, m.denied(name), `[${genName}]`);
          assert.equal(exited, false);
        }
      });
    })
  );
}

const crashes = TARGET === 'deepstream';
test(`event emit without data on a publish rule that reads data: ${crashes ? '1.1.1 crashes (reference crash)' : 'E|E|MESSAGE_PERMISSION_ERROR|<name>|EVT and the server runs on'}`, { timeout: 20000 }, () =>
  withServer(rules((r) => (r.event['price/*'] = { publish: 'data.price > 0' })), 'nodata', async (server) => {
    assert.equal(server.state, 'ready', server.output());
    await perm.session(async (clients, raws) => {
      for (const genName of perm.generations()) {
        const g = server.gen(genName);
        const [c, sub] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
        const name = `price/${uid('nd')}`;
        assert.deepEqual(await perm.exchange(sub, `E|S|${name}+`), [`E|A|S|${name}`]);
        const { replies, exited } = await sendAndWatch(server, c, `E|EVT|${name}+`);
        if (crashes) {
          assert.ok(exited, `1.1.1 survived; replies ${JSON.stringify(replies)}`);
          assert.equal(server.exitStatus.code, 1);
          assert.match(server.stderr(), /uncaught exception: TypeError: Cannot read properties of undefined \(reading 'charAt'\)/);
          return;
        }
        assert.deepEqual(replies, [`E|E|MESSAGE_PERMISSION_ERROR|${name}|EVT`], `[${genName}]`);
        assert.deepEqual(await perm.exchange(c, `E|EVT|${name}|O{"price":1}+`, 0), []);
        await sub.waitForMessage(`E|EVT|${name}|O{"price":1}`);
        assert.deepEqual(sub.texts().filter((t) => t.startsWith('E|EVT')), [`E|EVT|${name}|O{"price":1}`]);
        assert.equal(server.state, 'ready');
      }
    });
  })
);
