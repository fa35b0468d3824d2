'use strict';
// Listen permissions (tests/fixtures/permissions/rules.yml: event and record feed/* with
// `listen: user.data.role == 'feed'`). The rule is matched against the listen *pattern* (here
// `feed/<id>/.*`), not against the names it will match.
//
// Denied wire (1.1.1 and 2.4.1 alike): `E|E|MESSAGE_DENIED|<pattern>|L`,
// `R|E|MESSAGE_DENIED|<pattern>|L`; for a user without serverData the rule throws:
// `E|E|MESSAGE_PERMISSION_ERROR|<pattern>|L`.
const assert = require('node:assert/strict');
const perm = require('../lib/permissions');
const { uid } = require('../lib/util');

for (const [topic, subscribe] of [
  ['E', (name) => `E|S|${name}+`],
  ['R', (name) => `R|CR|${name}+`],
]) {
  const what = topic === 'E' ? 'event' : 'record';
  perm.perGeneration(`${what} listen restricted (feed/*: listen: user.data.role == 'feed'): the feed user listens and is asked to provide; others get ${topic}|E|MESSAGE_DENIED|<pattern>|L and are never asked`, { timeout: 15000 }, (g) =>
    perm.session(async (clients, raws) => {
      const id = uid('ls');
      const pattern = `feed/${id}/.*`;
      const [feeder, alice, plain, bob] = await Promise.all(['feeder', 'alice', 'plain', 'bob'].map((u) => g.rawOpen(u, raws)));
      assert.deepEqual(await perm.exchange(alice, `${topic}|L|${pattern}+`), [`${topic}|E|MESSAGE_DENIED|${pattern}|L`]);
      assert.deepEqual(await perm.exchange(plain, `${topic}|L|${pattern}+`), [`${topic}|E|MESSAGE_PERMISSION_ERROR|${pattern}|L`]);
      assert.deepEqual(await perm.exchange(feeder, `${topic}|L|${pattern}+`), [`${topic}|A|L|${pattern}`]);

      const a0 = alice.received.length;
      const p0 = plain.received.length;
      const name = `feed/${id}/x`;
      bob.sendText(subscribe(name));
      await feeder.waitForMessage(`${topic}|SP|${pattern}|${name}`);
      await perm.quiet(alice);
      assert.deepEqual(alice.texts(a0), []);
      assert.deepEqual(plain.texts(p0), []);

      // the real client's listen() is denied the same way
      const client = await g.open('alice', clients);
      const from = client.wire.length;
      const handler = topic === 'E' ? client.event : client.record;
      handler.listen(`feed/${id}/lib/.*`, () => {});
      await g.ds.waitWire(client, `${topic}|E|MESSAGE_DENIED|feed/${id}/lib/.*|L`, 3000, from);
    })
  );
}
