'use strict';
// Permission rules across the nodes of a cluster (issue 10): two nodes of this file's own on the
// shared Redis, both with tests/fixtures/permissions/cluster.yml, and the real 1.1.1 (TCP) and
// 2.3.4 (WebSocket) clients on different nodes, plus raw clients for the exact denial bytes.
// In a cluster Redis holds the records: a rule's oldData and a patch's result come from what
// Redis holds, and _() reads Redis, so a record written on one node decides a rule on another
// that never held it. The denial shapes are the single node's (tests/node/permissions), which
// the reference servers share.
const { before, after } = require('node:test');
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const ds1 = require('../lib/ds');
const ds2 = require('../lib/ds2');
const raw = require('../lib/raw');
const rawws = require('../lib/raw-ws');
const cluster = require('../lib/cluster');
const perm = require('../lib/permissions');
const ops = require('../lib/ops');
const { uid, waitFor, eventually, sleep } = require('../lib/util');

let n1;
let n2;

before(async () => {
  const rules = path.join(cluster.env('CLUSTER_WORK'), 'cluster-rules.yml');
  fs.copyFileSync(path.join(__dirname, '..', '..', 'fixtures', 'permissions', 'cluster.yml'), rules);
  const redis = cluster.sharedRedis();
  [n1, n2] = await Promise.all([
    cluster.startNode(redis.port, 'perm-node1', { permissions: rules }),
    cluster.startNode(redis.port, 'perm-node2', { permissions: rules }),
  ]);
});

after(async () => {
  await Promise.all([n1, n2].filter(Boolean).map((n) => n.stop()));
});

/** until a snapshot of `name` by raw client `c` shows `data` (what Redis holds) */
async function stored(c, name, data) {
  let last;
  await eventually(
    async () => {
      last = await perm.rawSnapshot(c, name);
      return last.endsWith(`|${data}`);
    },
    3000,
    () => `${name} to hold ${data} (last ${last})`
  );
}

const rawTcp = (node, username) => raw.connect(node.tcp, { auth: { username }, label: `${username}-raw@${node.label}` });
const rawWs = (node, username) => rawws.connect(node.http, { auth: { username }, label: `${username}-rawws@${node.label}` });

test('ownership across nodes: the owner (2.3.4, node 1) writes, the 1.1.1 client of another user on node 2 sees it and is denied its own set, which changes nothing anywhere', { timeout: 20000 }, () =>
  perm.session(async (clients, raws) => {
    const name = `own/alice/${uid('rec')}`;
    const [alice, bob] = await ops.openEach(clients, [
      [ds2, n1.http, 'alice', 'alice-v2@perm-node1'],
      [ds1, n2.tcp, 'bob', 'bob-v1@perm-node2'],
    ]);
    const { written: mine, seen: theirs } = await ops.recordPair(alice, bob, name);
    const token = uid('t');
    mine.set({ owner: 'alice', token });
    await waitFor(() => theirs.get().token === token, 3000, 'bob (node 2) to see alice\'s write (node 1)');

    const before = bob.wire.length;
    theirs.set({ owner: 'bob' });
    await waitFor(() => ops.recordTexts(bob, name, before).length > 0, 3000, 'bob\'s denial');
    assert.deepEqual(ops.recordTexts(bob, name, before), [`R|E|MESSAGE_DENIED|${name}|U|2|{"owner":"bob"}`]);
    const reader = await rawWs(n2, 'carol');
    raws.push(reader);
    assert.equal(await perm.rawSnapshot(reader, name), `R|R|${name}|1|{"owner":"alice","token":"${token}"}`);
    assert.deepEqual(await perm.exchange(reader, `R|D|${name}+`), [`R|E|MESSAGE_DENIED|${name}|D`]);
    await sleep(100);
    assert.deepEqual(mine.get(), { owner: 'alice', token });
  })
);

test('data and oldData from Redis: a patch on node 2 is checked against the record written on node 1; a locked record is deleted only after another node unlocks it', { timeout: 20000 }, () =>
  perm.session(async (clients, raws) => {
    const item = `item/${uid('it')}`;
    const locked = `locked/${uid('lk')}`;
    const [w1, w2] = await Promise.all([rawTcp(n1, 'w1'), rawWs(n2, 'w2')]);
    raws.push(w1, w2);
    await perm.rawRead(w1, item);
    assert.deepEqual(await perm.exchange(w1, `R|U|${item}|1|{"price":5,"name":"pen"}+`, 0), []);
    assert.deepEqual(await perm.exchange(w2, `R|P|${item}|2|price|N-1+`), [`R|E|MESSAGE_DENIED|${item}|P|2|price|N-1`]);
    assert.deepEqual(await perm.exchange(w2, `R|U|${item}|2|{"price":0}+`), [`R|E|MESSAGE_DENIED|${item}|U|2|{"price":0}`]);
    // the allowed patch reaches node 1's subscriber as sent
    assert.deepEqual(await perm.exchange(w2, `R|P|${item}|2|price|N7|{"writeSuccess":true}+`), [`R|WA|${item}|[2]|L`]);
    await w1.waitFor((f) => f[0] === 'R' && f[1] === 'P' && f[2] === item, 3000, 0, 'the patch on node 1');
    assert.equal(await perm.rawSnapshot(w1, item), `R|R|${item}|2|{"price":7,"name":"pen"}`);

    await perm.rawRead(w1, locked);
    assert.deepEqual(await perm.exchange(w1, `R|U|${locked}|1|{"locked":true}+`, 0), []);
    assert.equal(await perm.rawSnapshot(w1, locked), `R|R|${locked}|1|{"locked":true}`);
    assert.deepEqual(await perm.exchange(w2, `R|D|${locked}+`), [`R|E|MESSAGE_DENIED|${locked}|D`]);
    assert.deepEqual(await perm.exchange(w2, `R|U|${locked}|2|{"locked":false}|{"writeSuccess":true}+`), [`R|WA|${locked}|[2]|L`]);
    assert.deepEqual(await perm.exchange(w2, `R|D|${locked}+`), [`R|A|D|${locked}`]);
    await w1.waitFor((f) => f[0] === 'R' && f[1] === 'A' && f[2] === 'D' && f[3] === locked, 3000, 0, 'the delete on node 1');
  })
);

test('cross-references read Redis: a settings record written by the 1.1.1 client on node 1 opens and closes a feed published by the 2.3.4 client on node 2', { timeout: 20000 }, () =>
  perm.session(async (clients, raws) => {
    const id = uid('g');
    const feed = `gated/${id}`;
    const [admin, publisher, listener] = await ops.openEach(clients, [
      [ds1, n1.tcp, 'admin', 'admin-v1@perm-node1'],
      [ds2, n2.http, 'pub', 'pub-v2@perm-node2'],
      [ds2, n1.http, 'sub', 'sub-v2@perm-node1'],
    ]);
    const got = [];
    listener.event.subscribe(feed, (data) => got.push(data));
    // (a subscription on node 1 reaches node 2 through Redis: wait until an open feed delivers)
    const settings = await ops.ready(admin.record.getRecord(`settings/${id}`), admin.label);
    settings.set({ open: true });
    await eventually(
      () => {
        publisher.event.emit(feed, 'probe');
        return got.includes('probe');
      },
      5000,
      'an open feed to deliver across nodes',
      100
    );
    const reader = await rawWs(n2, 'reader');
    raws.push(reader);
    settings.set({ open: false });
    await stored(reader, `settings/${id}`, '{"open":false}');
    const before = publisher.wire.length;
    got.length = 0;
    publisher.event.emit(feed, 'closed');
    await waitFor(() => publisher.wire.length > before, 3000, 'the publisher\'s denial');
    assert.deepEqual(
      publisher.wire.slice(before).filter((m) => m[0] !== 'C').map((m) => m.join('|')),
      [`E|E|MESSAGE_DENIED|${feed}|EVT|Sclosed`]
    );
    settings.set({ open: true });
    await stored(reader, `settings/${id}`, '{"open":true}');
    publisher.event.emit(feed, 'reopened');
    await waitFor(() => got.includes('reopened'), 3000, 'the reopened feed');
    assert.deepEqual(got, ['reopened']);
  })
);
