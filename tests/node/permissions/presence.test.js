'use strict';
// Presence permissions (2.x only: deepstream.io 1.1.1 has no presence and refuses a `presence`
// section; tests/fixtures/permissions/presence.yml): `allow: user.data.role == 'admin'`
// applies to U|S (subscribe to logins/logouts) and U|Q (query); the rule's name is the
// message's first data field, S or Q.
//
// Denied wire (2.4.1): `U|E|MESSAGE_DENIED|S|S`, `U|E|MESSAGE_DENIED|Q|Q`; for a user without
// serverData the rule throws: `U|E|MESSAGE_PERMISSION_ERROR|S|S` / `|Q|Q`. U|US is not
// checked (a denied user's unsubscribe gets U|E|NOT_SUBSCRIBED|U).
const assert = require('node:assert/strict');
const perm = require('../lib/permissions');
const ops = require('../lib/ops');
const { sleep, waitFor } = require('../lib/util');

perm.onlyGeneration('v2', 'presence allow (user.data.role == \'admin\'): the admin subscribes and queries; others get U|E|MESSAGE_DENIED|S|S and |Q|Q and no join/leave', { timeout: 20000 }, (g) =>
  perm.session(async (clients, raws) => {
    const [admin, alice, plain] = await Promise.all([g.rawOpen('admin', raws), g.rawOpen('alice', raws), g.rawOpen('plain', raws)]);
    assert.deepEqual(await perm.exchange(alice, 'U|S|S+'), ['U|E|MESSAGE_DENIED|S|S']);
    assert.deepEqual(await perm.exchange(alice, 'U|Q|Q+'), ['U|E|MESSAGE_DENIED|Q|Q']);
    assert.deepEqual(await perm.exchange(plain, 'U|S|S+'), ['U|E|MESSAGE_PERMISSION_ERROR|S|S']);
    assert.deepEqual(await perm.exchange(plain, 'U|Q|Q+'), ['U|E|MESSAGE_PERMISSION_ERROR|Q|Q']);
    assert.deepEqual(await perm.exchange(admin, 'U|S|S+'), ['U|A|S|U']);
    const q = await perm.exchange(admin, 'U|Q|Q+');
    assert.equal(q.length, 1);
    assert.ok(q[0].startsWith('U|Q|') && q[0].split('|').includes('alice') && q[0].split('|').includes('plain'), q[0]);

    // a login and a logout: the admin is told, the denied users are not
    const a0 = alice.received.length;
    const p0 = plain.received.length;
    const visitor = await g.rawOpen('visitor', raws);
    await admin.waitForMessage('U|PNJ|visitor');
    await visitor.close();
    await admin.waitForMessage('U|PNL|visitor');
    await perm.quiet(alice);
    assert.deepEqual(alice.texts(a0), []);
    assert.deepEqual(plain.texts(p0), []);
  })
);

perm.onlyGeneration('v2', 'presence with the real client: subscribe() and getAll() of a non-admin are denied (error MESSAGE_DENIED, no callback); the admin\'s work', { timeout: 20000 }, (g) =>
  perm.session(async (clients) => {
    const [admin, bob] = await Promise.all([g.open('admin', clients), g.open('bob', clients)]);
    const seen = [];
    bob.presence.subscribe((username, loggedIn) => seen.push([username, loggedIn]));
    await g.ds.waitWire(bob, 'U|E|MESSAGE_DENIED|S|S');
    let answered = false;
    bob.presence.getAll(() => {
      answered = true;
    });
    await g.ds.waitWire(bob, 'U|E|MESSAGE_DENIED|Q|Q');
    await waitFor(() => bob.errors.filter((e) => e.topic === 'U' && e.event === 'MESSAGE_DENIED').length === 2, 3000, () => `bob's two presence errors (got ${JSON.stringify(bob.errors)})`);

    const adminSeen = [];
    admin.presence.subscribe((username, loggedIn) => adminSeen.push([username, loggedIn]));
    await g.ds.waitWire(admin, 'U|A|S|U');
    const [names] = await ops.getAll(admin);
    assert.ok(names.includes('bob'), JSON.stringify(names));

    const visitor = await g.open('visitor', clients);
    await waitFor(() => adminSeen.some((e) => e[0] === 'visitor' && e[1] === true), 3000, () => `the admin to see visitor log in (got ${JSON.stringify(adminSeen)})`);
    await g.ds.close(visitor);
    await waitFor(() => adminSeen.some((e) => e[0] === 'visitor' && e[1] === false), 3000, () => `the admin to see visitor log out (got ${JSON.stringify(adminSeen)})`);
    await sleep(100);
    assert.deepEqual(seen, []);
    assert.equal(answered, false);
    assert.deepEqual(g.ds.wireTexts(bob).filter((t) => t.startsWith('U|') && !t.startsWith('U|E|MESSAGE_DENIED|')), []);
  })
);
