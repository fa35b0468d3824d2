'use strict';
// RPC permissions (tests/fixtures/permissions/rules.yml, section rpc): provide restricted to a
// role, request restricted by a $variable and by the request data.
//
// Denied wire (1.1.1 and 2.4.1 alike): `P|E|MESSAGE_DENIED|<name>|S` for a provide,
// `P|E|MESSAGE_DENIED|<name>|REQ|<correlation id>|<typed data>` for a request (the library's
// make() callback gets the error 'MESSAGE_DENIED'); a rule that throws gives
// `P|E|MESSAGE_PERMISSION_ERROR|<name>|S`.
const assert = require('node:assert/strict');
const perm = require('../lib/permissions');
const { uid, callbackArgs, sleep } = require('../lib/util');

const make = (client, name, data) => callbackArgs((cb) => client.rpc.make(name, data, cb), `${client.label}: rpc.make(${name})`);

perm.perGeneration('provide restricted admin/* (provide: user.data.role == \'admin\'): only the admin provides; others get P|E|MESSAGE_DENIED|<name>|S and are never asked', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `admin/${uid('rp')}`;
    const [admin, alice] = await Promise.all([g.open('admin', clients), g.open('alice', clients)]);
    admin.rpc.provide(name, (data, response) => response.send(`admin:${data}`));
    await g.ds.waitWire(admin, `P|A|S|${name}`);

    const [rawAlice, rawPlain] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('plain', raws)]);
    assert.deepEqual(await perm.exchange(rawAlice, `P|S|${name}+`), [`P|E|MESSAGE_DENIED|${name}|S`]);
    assert.deepEqual(await perm.exchange(rawPlain, `P|S|${name}+`), [`P|E|MESSAGE_PERMISSION_ERROR|${name}|S`]);
    const from = alice.wire.length;
    alice.rpc.provide(name, (data, response) => response.send('alice'));
    await g.ds.waitWire(alice, `P|E|MESSAGE_DENIED|${name}|S`, 3000, from);

    // requests are open, and only the admin answers them
    const r0 = rawAlice.received.length;
    for (let i = 0; i < 6; i++) assert.deepEqual(await make(alice, name, `q${i}`), [null, `admin:q${i}`]);
    await sleep(100);
    assert.deepEqual(rawAlice.texts(r0).filter((t) => t.startsWith('P|REQ')), []);
    assert.deepEqual(rawPlain.texts().filter((t) => t.startsWith('P|REQ')), []);
  })
);

perm.perGeneration('request restricted by $owner account/$owner/* (request: user.id == $owner): the owner\'s request is answered; another user\'s is denied and never reaches the provider', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `account/alice/${uid('ac')}`;
    const [admin, alice, bob] = await Promise.all(['admin', 'alice', 'bob'].map((u) => g.open(u, clients)));
    const asked = [];
    admin.rpc.provide(name, (data, response) => {
      asked.push(data);
      response.send({ balance: 10 });
    });
    await g.ds.waitWire(admin, `P|A|S|${name}`);
    assert.deepEqual(await make(alice, name, 'mine'), [null, { balance: 10 }]);
    const b0 = bob.wire.length;
    assert.deepEqual(await make(bob, name, 'theirs'), ['MESSAGE_DENIED']);
    const cid = bob.wire.slice(b0).map((m) => m.join('|')).find((t) => t.startsWith(`P|E|MESSAGE_DENIED|${name}|REQ|`)).split('|')[5];
    assert.deepEqual(g.ds.wireTexts(bob, b0), [`P|E|MESSAGE_DENIED|${name}|REQ|${cid}|Stheirs`]);

    const rawBob = await g.rawOpen('bob', raws);
    assert.deepEqual(await perm.exchange(rawBob, `P|REQ|${name}|cid1|Sx+`), [`P|E|MESSAGE_DENIED|${name}|REQ|cid1|Sx`]);
    assert.deepEqual(asked, ['mine']);
  })
);

perm.perGeneration('request data calc/* (request: data.x >= 0): x 1 is answered; x -1, a number and a string are denied with the request echoed', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `calc/${uid('ca')}`;
    const admin = await g.open('admin', clients);
    const asked = [];
    admin.rpc.provide(name, (data, response) => {
      asked.push(data);
      response.send(data.x * 2);
    });
    await g.ds.waitWire(admin, `P|A|S|${name}`);
    const alice = await g.rawOpen('alice', raws);
    const from = alice.received.length;
    alice.sendText(`P|REQ|${name}|c1|O{"x":1}+`);
    await alice.waitForMessage(`P|RES|${name}|c1|N2`, 3000, from);
    for (const [cid, data] of [['c2', 'O{"x":-1}'], ['c3', 'N1'], ['c4', 'Sx'], ['c5', 'O{"x":"a"}']]) {
      assert.deepEqual(await perm.exchange(alice, `P|REQ|${name}|${cid}|${data}+`), [`P|E|MESSAGE_DENIED|${name}|REQ|${cid}|${data}`], data);
    }
    assert.deepEqual(asked, [{ x: 1 }]);
  })
);
