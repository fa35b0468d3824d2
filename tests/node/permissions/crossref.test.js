'use strict';
// Cross-references: rules that read another record with _('settings/' + $id)
// (tests/fixtures/permissions/crossref.yml). This file starts its own server of the target
// with those rules (so it can be run, and fail, on its own):
//   scripts/permission-tests.sh deepstream2 tests/node/permissions/crossref.test.js
//
// Observed on 1.1.1 and 2.4.1: the server loads the referenced record and runs the rule again
// with its data; a missing record is null, so `_('settings/x').open` throws and the message
// gets MESSAGE_PERMISSION_ERROR (for the READ check after R|CR, the record handler's form
// `R|E|MESSAGE_PERMISSION_ERROR|MESSAGE_PERMISSION_ERROR`). The rule sees the referenced
// record's current data, so changing it changes the outcome.
//
// deepstream.io 1.1.1 bug (record-handler.js runWhenRecordStable / removeRecordRequest): the
// first cross-reference to a record leaves an empty "request in progress" entry for it that
// only a message about that record itself clears. The next rule that references it waits,
// with no reply at all, until that record is written (then it runs with the new data). The
// tests below reference each settings record once between two writes of it, except the last
// test, which asserts this behaviour for target deepstream (2.4.1 answers at once).
const { before, after } = require('node:test');
const test = require('node:test');
const assert = require('node:assert/strict');
const perm = require('../lib/permissions');
const { uid } = require('../lib/util');

let server;

before(async () => {
  const rules = perm.readFixture('crossref.yml') + (perm.rulesDialect() === 'v2' ? perm.readFixture('presence.yml') : '');
  server = await perm.startServer(rules, 'crossref');
  if (server.state !== 'ready') {
    throw new Error(`${perm.target()} with crossref.yml: ${server.state} ${JSON.stringify(server.exitStatus)}\n${server.output()}`);
  }
});

after(async () => {
  if (!server) return;
  const running = server.state === 'ready';
  await server.stop();
  assert.ok(running, `the server exited during the tests:\n${server.output()}`);
});

/** R|CR + R|U of settings/<id> = data on raw client `c` (version 1) */
async function setSettings(c, id, data, version = 1) {
  const name = `settings/${id}`;
  if (version === 1) await perm.rawRead(c, name);
  assert.deepEqual(await perm.exchange(c, `R|U|${name}|${version}|${JSON.stringify(data)}+`, 0), []);
}

for (const genName of perm.generations()) {
  test(`[${genName}] event publish gated/$id (publish: _('settings/' + $id).open == true): open -> forwarded, closed -> MESSAGE_DENIED, missing -> MESSAGE_PERMISSION_ERROR; reopening allows it`, { timeout: 15000 }, () =>
    perm.session(async (clients, raws) => {
      const g = server.gen(genName);
      const [id1, id2, id3] = [uid('x1'), uid('x2'), uid('x3')];
      const [alice, bob] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
      await setSettings(alice, id1, { open: true });
      await setSettings(alice, id2, { open: false });
      for (const id of [id1, id2, id3]) assert.deepEqual(await perm.exchange(bob, `E|S|gated/${id}+`), [`E|A|S|gated/${id}`]);
      const b0 = bob.received.length;
      assert.deepEqual(await perm.exchange(alice, `E|EVT|gated/${id1}|Sx+`, 0), []);
      assert.deepEqual(await perm.exchange(alice, `E|EVT|gated/${id2}|Sx+`), [`E|E|MESSAGE_DENIED|gated/${id2}|EVT|Sx`]);
      assert.deepEqual(await perm.exchange(alice, `E|EVT|gated/${id3}|Sx+`), [`E|E|MESSAGE_PERMISSION_ERROR|gated/${id3}|EVT|Sx`]);
      await setSettings(alice, id2, { open: true }, 2);
      assert.deepEqual(await perm.exchange(alice, `E|EVT|gated/${id2}|Sy+`, 0), []);
      await perm.quiet(bob);
      assert.deepEqual(bob.texts(b0), [`E|EVT|gated/${id1}|Sx`, `E|EVT|gated/${id2}|Sy`]);
    })
  );

  test(`[${genName}] record rules with a cross-reference: write doc/$id and read note/$id follow settings/$id; a missing settings record is a permission error`, { timeout: 15000 }, () =>
    perm.session(async (clients, raws) => {
      const g = server.gen(genName);
      const [d1, d2, n1, n2] = [uid('d1'), uid('d2'), uid('n1'), uid('n2')];
      const [alice, bob] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
      await setSettings(alice, d1, { open: true });
      await setSettings(alice, d2, { open: false });
      await setSettings(alice, n1, { open: true });
      await perm.rawRead(bob, `doc/${d1}`);
      await perm.rawRead(bob, `doc/${d2}`);
      assert.deepEqual(await perm.exchange(bob, `R|U|doc/${d1}|1|{"t":1}+`, 0), []);
      assert.deepEqual(await perm.exchange(bob, `R|U|doc/${d2}|1|{"t":1}+`), [`R|E|MESSAGE_DENIED|doc/${d2}|U|1|{"t":1}`]);
      assert.equal(await perm.rawSnapshot(bob, `doc/${d1}`), `R|R|doc/${d1}|1|{"t":1}`);
      assert.equal(await perm.rawSnapshot(alice, `doc/${d2}`), `R|R|doc/${d2}|0|{}`);
      assert.deepEqual(await perm.exchange(bob, `R|CR|note/${n1}+`, 2), [`R|A|S|note/${n1}`, `R|R|note/${n1}|0|{}`]);
      assert.deepEqual(await perm.exchange(bob, `R|CR|note/${n2}+`), ['R|E|MESSAGE_PERMISSION_ERROR|MESSAGE_PERMISSION_ERROR']);
    })
  );

  test(`[${genName}] a cross-reference named by oldData: task/$id is writable by the members of the team its stored record names; a patch is checked the same way`, { timeout: 15000 }, () =>
    perm.session(async (clients, raws) => {
      const g = server.gen(genName);
      const [team, task] = [uid('team'), `task/${uid('t')}`];
      const [alice, bob] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
      await perm.rawRead(alice, `team/${team}`);
      assert.deepEqual(await perm.exchange(alice, `R|U|team/${team}|1|{"members":["alice"]}+`, 0), []);
      // a new task names no team yet (oldData.team == null): anyone may set it
      await perm.rawRead(alice, task);
      assert.deepEqual(await perm.exchange(alice, `R|U|${task}|1|{"team":"${team}"}+`, 0), []);
      // the stored task names the team: bob is not a member
      assert.deepEqual(await perm.exchange(bob, `R|U|${task}|2|{"team":"${team}","by":"bob"}+`), [`R|E|MESSAGE_DENIED|${task}|U|2|{"team":"${team}","by":"bob"}`]);
      // (each team record is referenced once between two writes of it: 1.1.1's bug, above)
      assert.deepEqual(await perm.exchange(alice, `R|U|team/${team}|2|{"members":["alice","bob"]}+`, 0), []);
      assert.deepEqual(await perm.exchange(bob, `R|U|${task}|2|{"team":"${team}","by":"bob"}+`, 0), []);
      assert.equal(await perm.rawSnapshot(alice, task), `R|R|${task}|2|{"team":"${team}","by":"bob"}`);
      assert.deepEqual(await perm.exchange(alice, `R|U|team/${team}|3|{"members":["alice"]}+`, 0), []);
      assert.deepEqual(await perm.exchange(bob, `R|P|${task}|3|by|Sbob2+`), [`R|E|MESSAGE_DENIED|${task}|P|3|by|Sbob2`]);
      assert.equal(await perm.rawSnapshot(alice, task), `R|R|${task}|2|{"team":"${team}","by":"bob"}`);
    })
  );

  const holds = perm.target() === 'deepstream';
  test(`[${genName}] a second cross-reference to the same record: ${holds ? '1.1.1 holds the message without a reply until that record is written (reference bug)' : 'answered at once (1.1.1 would hold it)'}`, { timeout: 15000 }, () =>
    perm.session(async (clients, raws) => {
      const g = server.gen(genName);
      const id = uid('h');
      const [alice, bob] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
      await setSettings(alice, id, { open: true });
      assert.deepEqual(await perm.exchange(bob, `E|S|gated/${id}+`), [`E|A|S|gated/${id}`]);
      const b0 = bob.received.length;
      assert.deepEqual(await perm.exchange(alice, `E|EVT|gated/${id}|S1+`, 0), []);
      await bob.waitForMessage(`E|EVT|gated/${id}|S1`, 3000, b0);
      assert.deepEqual(await perm.exchange(alice, `E|EVT|gated/${id}|S2+`, 0, 500), []);
      await perm.quiet(bob);
      if (holds) {
        assert.deepEqual(bob.texts(b0), [`E|EVT|gated/${id}|S1`], 'S2 was not held');
        await setSettings(alice, id, { open: true, v: 2 }, 2);
        await bob.waitForMessage(`E|EVT|gated/${id}|S2`, 3000, b0);
      } else {
        assert.deepEqual(bob.texts(b0), [`E|EVT|gated/${id}|S1`, `E|EVT|gated/${id}|S2`]);
      }
    })
  );
}
