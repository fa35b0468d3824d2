'use strict';
// Record permissions (tests/fixtures/permissions/rules.yml, section record): ownership by
// $userId, the CREATE / READ checks the server runs after R|CR, data validation of updates and
// patches, oldData, `action`, the most specific path, and (2.x) R|CU.
//
// Denied wire (1.1.1 and 2.4.1 alike): the message processor answers
// `R|E|MESSAGE_DENIED|<name>|<action>|<the rest of the message's data>`; the CREATE / READ
// checks after R|CR (and, 2.x, the CREATE / UPDATE checks of R|CU) come from the record handler
// and carry only `<name>|<action>` (C, R, or U).
const assert = require('node:assert/strict');
const perm = require('../lib/permissions');
const ops = require('../lib/ops');
const { uid, waitFor, sleep } = require('../lib/util');

perm.perGeneration('ownership user/$userId: the owner writes and a subscriber sees it; another user\'s update, patch and delete are denied and change nothing', { timeout: 20000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = 'user/alice';
    const [alice, bob] = await Promise.all([g.open('alice', clients), g.open('bob', clients)]);
    const { written: mine, seen: theirs } = await ops.recordPair(alice, bob, name);
    const token = uid('own');
    mine.set({ owner: 'alice', token });
    await waitFor(() => theirs.get().token === token, 3000, 'bob to see the owner\'s write');

    // bob, raw: every write to alice's record is denied, with the message's data echoed
    const attacker = await g.rawOpen('bob', raws);
    const { version, data } = await perm.rawRead(attacker, name);
    assert.deepEqual(data, { owner: 'alice', token });
    const v = version + 1;
    assert.deepEqual(await perm.exchange(attacker, `R|U|${name}|${v}|{"owner":"bob"}+`), [`R|E|MESSAGE_DENIED|${name}|U|${v}|{"owner":"bob"}`]);
    assert.deepEqual(await perm.exchange(attacker, `R|P|${name}|${v}|owner|Sbob+`), [`R|E|MESSAGE_DENIED|${name}|P|${v}|owner|Sbob`]);
    assert.deepEqual(await perm.exchange(attacker, `R|D|${name}+`), [`R|E|MESSAGE_DENIED|${name}|D`]);

    // nothing changed: same version and data, and the owner's next version is accepted
    assert.equal(await perm.rawSnapshot(attacker, name), `R|R|${name}|${version}|{"owner":"alice","token":"${token}"}`);
    assert.equal(ops.recordTexts(alice, name).filter((t) => /"bob"|Sbob/.test(t)).length, 0, 'the owner received the denied writes');
    const token2 = uid('own');
    mine.set('token', token2);
    await waitFor(() => theirs.get().token === token2, 3000, 'bob to see the owner\'s second write');
    assert.equal(mine.version, v);

    // bob with the real client: set() is denied (the client applied it locally, the server did not)
    const before = bob.wire.length;
    theirs.set({ owner: 'bob' });
    await waitFor(() => ops.recordTexts(bob, name, before).some((t) => t.startsWith(`R|E|MESSAGE_DENIED|${name}|U|`)), 3000, () => `bob's denial (got ${JSON.stringify(bob.wire.slice(before))})`);
    assert.deepEqual(ops.recordTexts(bob, name, before), [`R|E|MESSAGE_DENIED|${name}|U|${v + 1}|{"owner":"bob"}`]);
    await sleep(100);
    assert.deepEqual(mine.get(), { owner: 'alice', token: token2 });
    assert.equal(await perm.rawSnapshot(attacker, name), `R|R|${name}|${v}|{"owner":"alice","token":"${token2}"}`);
  })
);

perm.perGeneration('R|CR is checked for CREATE (owned/$userId/*) and READ (private/$userId/*): R|E|MESSAGE_DENIED|<name>|C or |R', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const id = uid('cr');
    const [alice, bob] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
    const owned = `owned/bob/${id}`;
    const priv = `private/alice/${id}`;
    // alice may not create bob's record; bob may; once it exists alice reads it (read is open)
    assert.deepEqual(await perm.exchange(alice, `R|CR|${owned}+`), [`R|E|MESSAGE_DENIED|${owned}|C`]);
    assert.equal(await perm.rawSnapshot(bob, owned), `R|E|SN|${owned}|RECORD_NOT_FOUND`);
    assert.deepEqual(await perm.exchange(bob, `R|CR|${owned}+`, 2), [`R|A|S|${owned}`, `R|R|${owned}|0|{}`]);
    assert.deepEqual(await perm.exchange(alice, `R|CR|${owned}+`, 2), [`R|A|S|${owned}`, `R|R|${owned}|0|{}`]);
    // only alice reads alice's private records: not by R|CR, R|SN or R|H
    assert.deepEqual(await perm.exchange(alice, `R|CR|${priv}+`, 2), [`R|A|S|${priv}`, `R|R|${priv}|0|{}`]);
    assert.deepEqual(await perm.exchange(alice, `R|U|${priv}|1|{"pin":1234}+`, 0), []);
    assert.deepEqual(await perm.exchange(bob, `R|CR|${priv}+`), [`R|E|MESSAGE_DENIED|${priv}|R`]);
    assert.deepEqual(await perm.exchange(bob, `R|SN|${priv}+`), [`R|E|MESSAGE_DENIED|${priv}|SN`]);
    assert.deepEqual(await perm.exchange(bob, `R|H|${priv}+`), [`R|E|MESSAGE_DENIED|${priv}|H`]);
    // bob was not subscribed by the denied R|CR: alice's next write does not reach him
    assert.deepEqual(await perm.exchange(alice, `R|U|${priv}|2|{"pin":1}+`, 0), []);
    await perm.quiet(bob);
    assert.deepEqual(bob.texts().filter((t) => t.includes(priv) && !t.includes('MESSAGE_DENIED')), []);
  })
);

perm.perGeneration('data validation item/* (write: data.price > 0): update 5 passes, update -1 and a patch to -1 are denied; the patch is checked against the current data', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `item/${uid('it')}`;
    const [alice, watcher] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
    await perm.rawRead(alice, name);
    await perm.rawRead(watcher, name);
    const w0 = watcher.received.length;
    assert.deepEqual(await perm.exchange(alice, `R|U|${name}|1|{"price":5,"title":"lamp"}+`, 0), []);
    assert.deepEqual(await perm.exchange(alice, `R|U|${name}|2|{"price":-1,"title":"lamp"}+`), [`R|E|MESSAGE_DENIED|${name}|U|2|{"price":-1,"title":"lamp"}`]);
    assert.deepEqual(await perm.exchange(alice, `R|P|${name}|2|price|N-1+`), [`R|E|MESSAGE_DENIED|${name}|P|2|price|N-1`]);
    // a patch of another field keeps price 5: allowed
    assert.deepEqual(await perm.exchange(alice, `R|P|${name}|2|title|Sdesk+`, 0), []);
    assert.deepEqual(await perm.exchange(alice, `R|P|${name}|3|price|N7+`, 0), []);
    // a whole update without price: undefined > 0 is false
    assert.deepEqual(await perm.exchange(alice, `R|U|${name}|4|{"title":"free"}+`), [`R|E|MESSAGE_DENIED|${name}|U|4|{"title":"free"}`]);
    assert.equal(await perm.rawSnapshot(alice, name), `R|R|${name}|3|{"price":7,"title":"desk"}`);
    await perm.quiet(watcher);
    assert.deepEqual(watcher.texts(w0), [`R|U|${name}|1|{"price":5,"title":"lamp"}`, `R|P|${name}|2|title|Sdesk`, `R|P|${name}|3|price|N7`]);

    // the real client: record.set(path, value) sends a patch, denied the same way
    const client = await g.open('alice', clients);
    const rec = await ops.ready(client.record.getRecord(name), 'alice');
    const from = client.wire.length;
    rec.set('price', 0);
    await g.ds.waitWire(client, `R|E|MESSAGE_DENIED|${name}|P|4|price|N0`, 3000, from);
    assert.equal(await perm.rawSnapshot(alice, name), `R|R|${name}|3|{"price":7,"title":"desk"}`);
  })
);

perm.perGeneration('oldData counter/* (write: data.value > (oldData.value || 0)): the value may only go up, for updates and patches', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `counter/${uid('ct')}`;
    const alice = await g.rawOpen('alice', raws);
    await perm.rawRead(alice, name);
    assert.deepEqual(await perm.exchange(alice, `R|U|${name}|1|{"value":3}+`, 0), []);
    assert.deepEqual(await perm.exchange(alice, `R|U|${name}|2|{"value":2}+`), [`R|E|MESSAGE_DENIED|${name}|U|2|{"value":2}`]);
    assert.deepEqual(await perm.exchange(alice, `R|U|${name}|2|{"value":3}+`), [`R|E|MESSAGE_DENIED|${name}|U|2|{"value":3}`]);
    assert.deepEqual(await perm.exchange(alice, `R|P|${name}|2|value|N1+`), [`R|E|MESSAGE_DENIED|${name}|P|2|value|N1`]);
    assert.deepEqual(await perm.exchange(alice, `R|P|${name}|2|value|N4+`, 0), []);
    assert.deepEqual(await perm.exchange(alice, `R|U|${name}|3|{"value":10}+`, 0), []);
    assert.equal(await perm.rawSnapshot(alice, name), `R|R|${name}|3|{"value":10}`);
  })
);

perm.perGeneration('action in a rule (act/*: read: action != \'SNAPSHOT\'): R|SN is denied, R|CR and R|H are not', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `act/${uid('act')}`;
    const alice = await g.rawOpen('alice', raws);
    assert.deepEqual(await perm.exchange(alice, `R|SN|${name}+`), [`R|E|MESSAGE_DENIED|${name}|SN`]);
    assert.deepEqual(await perm.exchange(alice, `R|CR|${name}+`, 2), [`R|A|S|${name}`, `R|R|${name}|0|{}`]);
    assert.deepEqual(await perm.exchange(alice, `R|H|${name}+`), [`R|H|${name}|T`]);
    assert.deepEqual(await perm.exchange(alice, `R|SN|${name}+`), [`R|E|MESSAGE_DENIED|${name}|SN`]);
  })
);

perm.perGeneration('most specific path wins: spec/open/* (write: true, listed first) beats spec/* (write: false)', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const id = uid('sp');
    const alice = await g.rawOpen('alice', raws);
    const open = `spec/open/${id}`;
    const closed = `spec/${id}`;
    await perm.rawRead(alice, open);
    await perm.rawRead(alice, closed);
    assert.deepEqual(await perm.exchange(alice, `R|U|${open}|1|{"a":1}+`, 0), []);
    assert.deepEqual(await perm.exchange(alice, `R|U|${closed}|1|{"a":1}+`), [`R|E|MESSAGE_DENIED|${closed}|U|1|{"a":1}`]);
    assert.equal(await perm.rawSnapshot(alice, open), `R|R|${open}|1|{"a":1}`);
    assert.equal(await perm.rawSnapshot(alice, closed), `R|R|${closed}|0|{}`);
  })
);

perm.onlyGeneration('v2', 'R|CU (setData) is checked for CREATE then UPDATE: R|E|MESSAGE_DENIED|<name>|C or |U with no data; R|HD is a read; a denied write echoes its config field', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const id = uid('cu');
    const [alice, bob] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
    const owned = `owned/bob/${id}`;
    assert.deepEqual(await perm.exchange(alice, `R|CU|${owned}|-1|{"a":1}|{}+`), [`R|E|MESSAGE_DENIED|${owned}|C`]);
    assert.equal(await perm.rawSnapshot(bob, owned), `R|E|SN|${owned}|RECORD_NOT_FOUND`);

    const name = 'user/alice';
    const { version } = await perm.rawRead(alice, name);
    assert.deepEqual(await perm.exchange(bob, `R|CU|${name}|-1|{"by":"bob"}|{}+`), [`R|E|MESSAGE_DENIED|${name}|U`]);
    assert.deepEqual(await perm.exchange(bob, `R|CU|${name}|-1|by|Sbob|{}+`), [`R|E|MESSAGE_DENIED|${name}|U`]);
    const v = version + 1;
    assert.deepEqual(await perm.exchange(bob, `R|U|${name}|${v}|{"by":"bob"}|{"writeSuccess":true}+`), [`R|E|MESSAGE_DENIED|${name}|U|${v}|{"by":"bob"}|{"writeSuccess":true}`]);
    assert.deepEqual(await perm.exchange(alice, `R|CU|${name}|-1|{"by":"alice"}|{"writeSuccess":true}+`), [`R|WA|${name}|[-1]|L`]);
    assert.equal(await perm.rawSnapshot(bob, name), `R|R|${name}|${v}|{"by":"alice"}`);

    const priv = `private/alice/${id}`;
    assert.deepEqual(await perm.exchange(bob, `R|HD|${priv}+`), [`R|E|MESSAGE_DENIED|${priv}|HD`]);

    // the real client: setData() of another user's record
    const client = await g.open('bob', clients);
    const from = client.wire.length;
    client.record.setData(name, { by: 'bob-lib' });
    await g.ds.waitWire(client, `R|E|MESSAGE_DENIED|${name}|U`, 3000, from);
    assert.equal(await perm.rawSnapshot(bob, name), `R|R|${name}|${v}|{"by":"alice"}`);
  })
);

// deepstream.io 2.4.1 runs the UPDATE check of R|CU on a message of the record name only
// (record-handler.js _permissionAction): a rule that reads `data` gets JSON.parse(undefined),
// throws, and every R|CU is refused with R|E|MESSAGE_PERMISSION_ERROR|MESSAGE_PERMISSION_ERROR,
// valid data or not. That is asserted for deepstream2 as the reference's behaviour; corestream
// is expected to evaluate the rule on the message's data instead.
perm.onlyGeneration('v2', 'R|P with a write config on a path whose write rule reads data (item/*): 2.4.1 refuses every one with MESSAGE_PERMISSION_ERROR (reference bug: it takes only four fields); corestream checks the patched data', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `item/${uid('pc')}`;
    const alice = await g.rawOpen('alice', raws);
    await perm.rawRead(alice, name);
    assert.deepEqual(await perm.exchange(alice, `R|U|${name}|1|{"price":5}+`, 0), []);
    const good = `R|P|${name}|2|price|N7|{"writeSuccess":true}`;
    const bad = `R|P|${name}|2|price|N-7|{"writeSuccess":true}`;
    if (perm.target() === 'deepstream2') {
      assert.deepEqual(await perm.exchange(alice, `${good}+`), [good.replace('R|P|', 'R|E|MESSAGE_PERMISSION_ERROR|').replace(`${name}|2`, `${name}|P|2`)]);
      assert.deepEqual(await perm.exchange(alice, `${bad}+`), [bad.replace('R|P|', 'R|E|MESSAGE_PERMISSION_ERROR|').replace(`${name}|2`, `${name}|P|2`)]);
      assert.equal(await perm.rawSnapshot(alice, name), `R|R|${name}|1|{"price":5}`);
    } else {
      assert.deepEqual(await perm.exchange(alice, `${good}+`), [`R|WA|${name}|[2]|L`]);
      assert.deepEqual(await perm.exchange(alice, `R|P|${name}|3|price|N-7|{"writeSuccess":true}+`), [`R|E|MESSAGE_DENIED|${name}|P|3|price|N-7|{"writeSuccess":true}`]);
      assert.equal(await perm.rawSnapshot(alice, name), `R|R|${name}|2|{"price":7}`);
    }
  })
);

perm.onlyGeneration('v2', 'R|CU on a path whose write rule reads data (item/*): 2.4.1 refuses every one with MESSAGE_PERMISSION_ERROR|MESSAGE_PERMISSION_ERROR (reference bug); corestream evaluates the data', { timeout: 15000 }, (g) =>
  perm.session(async (clients, raws) => {
    const name = `item/${uid('cu')}`;
    const alice = await g.rawOpen('alice', raws);
    if (perm.target() === 'deepstream2') {
      const bug = ['R|E|MESSAGE_PERMISSION_ERROR|MESSAGE_PERMISSION_ERROR'];
      assert.deepEqual(await perm.exchange(alice, `R|CU|${name}|-1|{"price":5}|{}+`), bug);
      assert.deepEqual(await perm.exchange(alice, `R|CU|${name}|-1|{"price":-5}|{}+`), bug);
      assert.deepEqual(await perm.exchange(alice, `R|CU|${name}|-1|price|N5|{}+`), bug);
      assert.equal(await perm.rawSnapshot(alice, name), `R|E|SN|${name}|RECORD_NOT_FOUND`);
    } else {
      assert.deepEqual(await perm.exchange(alice, `R|CU|${name}|-1|{"price":5}|{"writeSuccess":true}+`), [`R|WA|${name}|[-1]|L`]);
      assert.deepEqual(await perm.exchange(alice, `R|CU|${name}|-1|{"price":-5}|{}+`), [`R|E|MESSAGE_DENIED|${name}|U`]);
      assert.deepEqual(await perm.exchange(alice, `R|CU|${name}|-1|price|N-5|{}+`), [`R|E|MESSAGE_DENIED|${name}|U`]);
      assert.equal(await perm.rawSnapshot(alice, name), `R|R|${name}|1|{"price":5}`);
    }
  })
);
