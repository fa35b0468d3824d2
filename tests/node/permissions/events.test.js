'use strict';
// Event permissions (tests/fixtures/permissions/rules.yml, section event): a read-only feed
// (publish only for role feed), a rule on the event data, a restricted subscribe, and a path
// with two $variables.
//
// Denied wire (1.1.1 and 2.4.1 alike): `E|E|MESSAGE_DENIED|<name>|EVT|<typed data>` for an
// emit, `E|E|MESSAGE_DENIED|<name>|S` for a subscribe; a rule that throws (user.data is null
// for a user without serverData) gives `E|E|MESSAGE_PERMISSION_ERROR|<name>|EVT|<typed data>`.
// An emit with no data field on a path whose rule reads `data` is in hazards.test.js (it
// crashes 1.1.1).
const assert = require('node:assert/strict');
const perm = require('../lib/permissions');
const { uid, waitFor, sleep } = require('../lib/util');

/** values received by a library subscription */
function subscribe(client, name) {
  const got = [];
  client.event.subscribe(name, (v) => got.push(v));
  return got;
}

perm.perGeneration('read-only feed feed/* (publish: user.data.role == \'feed\'): the feed user\'s emit reaches a subscriber; another user\'s is denied and reaches nobody', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `feed/${uid('fd')}`;
    const [feeder, alice, bob] = await Promise.all(['feeder', 'alice', 'bob'].map((u) => g.open(u, clients)));
    const got = subscribe(bob, name);
    await g.ds.waitWire(bob, `E|A|S|${name}`);

    feeder.event.emit(name, { n: 1 });
    await waitFor(() => got.length === 1, 3000, 'bob to get the feed\'s first event');

    const from = alice.wire.length;
    alice.event.emit(name, { n: 'forged' });
    await g.ds.waitWire(alice, `E|E|MESSAGE_DENIED|${name}|EVT|O{"n":"forged"}`, 3000, from);
    assert.deepEqual(g.ds.wireTexts(alice, from), [`E|E|MESSAGE_DENIED|${name}|EVT|O{"n":"forged"}`]);
    assert.ok(alice.errors.some((e) => e.event === 'MESSAGE_DENIED' && e.topic === 'E'), `alice's client errors: ${JSON.stringify(alice.errors)}`);

    // raw: the exact reply, for a user with the wrong role and for one without serverData
    const [rawAlice, rawPlain] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('plain', raws)]);
    assert.deepEqual(await perm.exchange(rawAlice, `E|EVT|${name}|Shello+`), [`E|E|MESSAGE_DENIED|${name}|EVT|Shello`]);
    assert.deepEqual(await perm.exchange(rawPlain, `E|EVT|${name}|Shello+`), [`E|E|MESSAGE_PERMISSION_ERROR|${name}|EVT|Shello`]);
    // subscribing is open
    assert.deepEqual(await perm.exchange(rawAlice, `E|S|${name}+`), [`E|A|S|${name}`]);

    // the feed's next event arrives after the denied ones would have: bob got only the feed's
    feeder.event.emit(name, { n: 2 });
    await waitFor(() => got.length >= 2, 3000, 'bob to get the feed\'s second event');
    await sleep(100);
    assert.deepEqual(got, [{ n: 1 }, { n: 2 }]);
    await waitFor(() => rawAlice.texts().includes(`E|EVT|${name}|O{"n":2}`), 3000, 'raw alice to get the feed\'s second event');
  })
);

perm.perGeneration('event data price/* (publish: data.price > 0): O{"price":5} is forwarded verbatim; price -1, a number and a string are denied', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `price/${uid('pr')}`;
    const [pub, sub] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
    assert.deepEqual(await perm.exchange(sub, `E|S|${name}+`), [`E|A|S|${name}`]);
    const s0 = sub.received.length;
    assert.deepEqual(await perm.exchange(pub, `E|EVT|${name}|O{"price":5}+`, 0), []);
    for (const data of ['O{"price":-1}', 'O{"price":0}', 'N5', 'Sabc', 'O{}']) {
      assert.deepEqual(await perm.exchange(pub, `E|EVT|${name}|${data}+`), [`E|E|MESSAGE_DENIED|${name}|EVT|${data}`], data);
    }
    assert.deepEqual(await perm.exchange(pub, `E|EVT|${name}|O{"price":0.5,"x":[1]}+`, 0), []);
    await perm.quiet(sub);
    assert.deepEqual(sub.texts(s0), [`E|EVT|${name}|O{"price":5}`, `E|EVT|${name}|O{"price":0.5,"x":[1]}`]);

    // the library: emit(name, {price: -3}) is denied, emit(name, {price: 3}) arrives
    const client = await g.open('alice', clients);
    const from = client.wire.length;
    client.event.emit(name, { price: -3 });
    await g.ds.waitWire(client, `E|E|MESSAGE_DENIED|${name}|EVT|O{"price":-3}`, 3000, from);
    client.event.emit(name, { price: 3 });
    await waitFor(() => sub.texts(s0).length === 3, 3000, 'the subscriber to get the library\'s valid event');
    assert.equal(sub.texts(s0)[2], `E|EVT|${name}|O{"price":3}`);
  })
);

perm.perGeneration('restricted subscribe secret/* (subscribe: user.data.role == \'admin\'): E|E|MESSAGE_DENIED|<name>|S; the denied user gets no events', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `secret/${uid('sc')}`;
    const [alice, admin, pub] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('admin', raws), g.rawOpen('bob', raws)]);
    assert.deepEqual(await perm.exchange(alice, `E|S|${name}+`), [`E|E|MESSAGE_DENIED|${name}|S`]);
    assert.deepEqual(await perm.exchange(admin, `E|S|${name}+`), [`E|A|S|${name}`]);
    const a0 = alice.received.length;
    assert.deepEqual(await perm.exchange(pub, `E|EVT|${name}|Sx+`, 0), []);
    await admin.waitForMessage(`E|EVT|${name}|Sx`);
    await perm.quiet(alice);
    assert.deepEqual(alice.texts(a0), []);

    // the library: subscribe() is denied (and the client reports it)
    const client = await g.open('alice', clients);
    const from = client.wire.length;
    client.event.subscribe(name, () => {});
    await g.ds.waitWire(client, `E|E|MESSAGE_DENIED|${name}|S`, 3000, from);
    assert.ok(client.errors.some((e) => e.event === 'MESSAGE_DENIED' && e.topic === 'E'), `client errors: ${JSON.stringify(client.errors)}`);
  })
);

perm.perGeneration('two $variables chat/$room/$sender (publish: $sender == user.id && $room.startsWith(\'public\'))', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const room = `public-${uid('r')}`;
    const name = `chat/${room}/alice`;
    const [alice, bob] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
    assert.deepEqual(await perm.exchange(bob, `E|S|${name}+`), [`E|A|S|${name}`]);
    assert.deepEqual(await perm.exchange(alice, `E|EVT|${name}|Shi+`, 0), []);
    await bob.waitForMessage(`E|EVT|${name}|Shi`);
    assert.deepEqual(await perm.exchange(bob, `E|EVT|${name}|Sfake+`), [`E|E|MESSAGE_DENIED|${name}|EVT|Sfake`]);
    const priv = `chat/private-${uid('r')}/alice`;
    assert.deepEqual(await perm.exchange(alice, `E|EVT|${priv}|Shi+`), [`E|E|MESSAGE_DENIED|${priv}|EVT|Shi`]);
    // a name with more segments than the path does not match it ($variables stop at /): the "*" rule applies
    const deeper = `chat/${room}/alice/extra`;
    assert.deepEqual(await perm.exchange(bob, `E|EVT|${deeper}|Sok+`, 0), []);
  })
);
