'use strict';
// A rule that throws at run time (tests/fixtures/permissions/rules.yml, record and event
// deep/*: `data.a.b.c == 1`, which throws when data.a or data.a.b is not an object): the message
// is refused with `<topic>|E|MESSAGE_PERMISSION_ERROR|<name>|<action>|<the rest of the data>`
// (the same shape as MESSAGE_DENIED), the server logs the exception, the connection stays
// usable. A rule that is merely false gives MESSAGE_DENIED. The same on 1.1.1 and 2.4.1.
const assert = require('node:assert/strict');
const perm = require('../lib/permissions');
const { uid } = require('../lib/util');

perm.perGeneration('record write rule throws (deep/*: data.a.b.c == 1): R|E|MESSAGE_PERMISSION_ERROR|<name>|U|<version>|<json>; a false rule is MESSAGE_DENIED; the record is unchanged', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `deep/${uid('dp')}`;
    const alice = await g.rawOpen('alice', raws);
    await perm.rawRead(alice, name);
    for (const json of ['{"a":{}}', '{}', '{"a":1}', '{"a":null}']) {
      assert.deepEqual(await perm.exchange(alice, `R|U|${name}|1|${json}+`), [`R|E|MESSAGE_PERMISSION_ERROR|${name}|U|1|${json}`], json);
    }
    assert.deepEqual(await perm.exchange(alice, `R|U|${name}|1|{"a":{"b":{"c":2}}}+`), [`R|E|MESSAGE_DENIED|${name}|U|1|{"a":{"b":{"c":2}}}`]);
    assert.deepEqual(await perm.exchange(alice, `R|U|${name}|1|{"a":{"b":{"c":1}}}+`, 0), []);
    // patches: the rule sees the current data with the patch applied
    assert.deepEqual(await perm.exchange(alice, `R|P|${name}|2|a|N1+`), [`R|E|MESSAGE_PERMISSION_ERROR|${name}|P|2|a|N1`]);
    assert.deepEqual(await perm.exchange(alice, `R|P|${name}|2|a.b|O{}+`), [`R|E|MESSAGE_DENIED|${name}|P|2|a.b|O{}`]);
    assert.deepEqual(await perm.exchange(alice, `R|P|${name}|2|a.x|N5+`, 0), []);
    assert.equal(await perm.rawSnapshot(alice, name), `R|R|${name}|2|{"a":{"b":{"c":1},"x":5}}`);
  })
);

perm.perGeneration('event publish rule throws (deep/*): E|E|MESSAGE_PERMISSION_ERROR|<name>|EVT|<typed data>, nothing forwarded; the real client reports MESSAGE_PERMISSION_ERROR', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `deep/${uid('dp')}`;
    const [pub, sub] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
    assert.deepEqual(await perm.exchange(sub, `E|S|${name}+`), [`E|A|S|${name}`]);
    const s0 = sub.received.length;
    assert.deepEqual(await perm.exchange(pub, `E|EVT|${name}|O{"a":{}}+`), [`E|E|MESSAGE_PERMISSION_ERROR|${name}|EVT|O{"a":{}}`]);
    assert.deepEqual(await perm.exchange(pub, `E|EVT|${name}|Sa+`), [`E|E|MESSAGE_PERMISSION_ERROR|${name}|EVT|Sa`]);
    assert.deepEqual(await perm.exchange(pub, `E|EVT|${name}|O{"a":{"b":{"c":1}}}+`, 0), []);

    const client = await g.open('alice', clients);
    const from = client.wire.length;
    client.event.emit(name, { a: 7 });
    await g.ds.waitWire(client, `E|E|MESSAGE_PERMISSION_ERROR|${name}|EVT|O{"a":7}`, 3000, from);
    assert.ok(client.errors.some((e) => e.event === 'MESSAGE_PERMISSION_ERROR' && e.topic === 'E'), `client errors: ${JSON.stringify(client.errors)}`);
    await perm.quiet(sub);
    assert.deepEqual(sub.texts(s0), [`E|EVT|${name}|O{"a":{"b":{"c":1}}}`]);
  })
);
