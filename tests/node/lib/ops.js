'use strict';
/*
 * Operations on a real library client, the same for deepstream.io-client-js 1.1.1 (ds.js) and
 * 2.3.4 (ds2.js): callbacks turned into promises, the parts of client.wire a test looks at,
 * barriers for event subscriptions. Shared by the v1/v2 suites (tests/node/suite), the
 * cluster tests and the nginx tests.
 */
const util = require('./util');
const { decodeTyped } = require('./wire');

/** the helper module of a client's library: ds2.js for a 2.3.4 client (it records what it sent), else ds.js */
const libOf = (c) => (c.sent ? require('./ds2') : require('./ds'));

/**
 * opens logged-in clients of either library at once, one per spec [lib, url, username, label]
 * (lib: ds.js or ds2.js); once all are open, adds them to `clients`
 */
async function openEach(clients, specs) {
  const opened = await Promise.all(specs.map(([lib, url, username, label]) => lib.open(url, { username }, label)));
  clients.push(...opened);
  return opened;
}

/** closes library clients of both libraries */
const closeClients = (clients, timeoutMs) => Promise.all(clients.filter(Boolean).map((c) => libOf(c).close(c, timeoutMs)));

// ------------------------------------------------------------------------------ records

/** resolves with the record (or list) once it is ready */
function ready(rec, label, timeoutMs = 3000) {
  return util.withTimeout(
    new Promise((resolve) => rec.whenReady(() => resolve(rec))),
    timeoutMs,
    `${label}: whenReady(${rec.name})`
  );
}

/** client.record.snapshot(name, cb) -> Promise of the callback's arguments (as an array) */
const snapshot = (client, name, timeoutMs = 4000) => util.callbackArgs((cb) => client.record.snapshot(name, cb), `${client.label}: record.snapshot(${name})`, timeoutMs);

/** client.record.has(name, cb) -> Promise of the callback's arguments (as an array) */
const has = (client, name, timeoutMs = 4000) => util.callbackArgs((cb) => client.record.has(name, cb), `${client.label}: record.has(${name})`, timeoutMs);

/** snapshots `name` from `client` until the data satisfies pred (the write may still be in flight) */
async function snapshotUntil(client, name, pred, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await snapshot(client, name);
    if (last[0] === null && pred(last[1])) return last;
    if (Date.now() > deadline) {
      throw new Error(`${client.label}: snapshot of ${name} never matched; last callback args: ${JSON.stringify(last)}`);
    }
    await util.sleep(20);
  }
}

/** record-topic messages (capture notation) a library client received about `name`, from index `from` */
const recordTexts = (client, name, from = 0) =>
  client.wire
    .slice(from)
    .filter((m) => m[0] === 'R' && (m[2] === name || m[3] === name))
    .map((m) => m.join('|'));

/** U/P messages about `name` in a field-array list */
const isWrite = (name) => (m) => m[0] === 'R' && (m[1] === 'U' || m[1] === 'P') && m[2] === name;

/** the state a record reaches from `data` through a sequence of R|U / R|P messages (paths are top-level keys) */
function replayWrites(data, messages) {
  let state = data;
  for (const m of messages) {
    if (m[1] === 'U') state = JSON.parse(m[4]);
    else state = Object.assign({}, state, { [m[4]]: decodeTyped(m[5]) });
  }
  return state;
}

/** the record `name` as held by a library client and by another one, once both are ready */
async function recordPair(a, b, name, timeoutMs = 10000) {
  return { written: await ready(a.record.getRecord(name), a.label, timeoutMs), seen: await ready(b.record.getRecord(name), b.label, timeoutMs) };
}

/**
 * Raw observers of a record: waits until the observers (raw clients subscribed with R|CR) were
 * quiet for `quietMs` and agree on the number of messages, then returns what each received
 * from its `from` on, without R|A / R|R and without heartbeats (`isHeartbeat(fields)`).
 */
async function settledWrites(observers, isHeartbeat, quietMs, timeoutMs = 15000) {
  const count = (c) => c.received.filter((m) => !isHeartbeat(m)).length;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = Math.max(...observers.map((o) => o.c.receivedAt[o.c.receivedAt.length - 1] || 0));
    const counts = observers.map((o) => count(o.c));
    if (Date.now() - last >= quietMs && counts.every((n) => n === counts[0])) break;
    if (Date.now() > deadline) throw new Error(`the observers never went quiet and agreed (message counts ${counts.join('/')})`);
    await util.sleep(50);
  }
  const notNoise = (m) => !(m[0] === 'R' && (m[1] === 'A' || m[1] === 'R')) && !isHeartbeat(m);
  return observers.map((o) => o.c.received.slice(o.from).filter(notNoise));
}

/** a raw client (connected and logged in) subscribed to `name` with R|CR -> {c, readVersion, readData, from} */
async function rawObserver(connected, name) {
  const c = await connected;
  const from = c.received.length;
  c.send('R', 'CR', name);
  const read = await c.waitFor((m) => m[0] === 'R' && m[1] === 'R' && m[2] === name, 3000, from, `R|R|${name}`);
  return { c, readVersion: Number(read[3]), readData: JSON.parse(read[4]), from };
}

// ------------------------------------------------------------------------------ RPC

/**
 * client.rpc.make(name, data, cb) -> Promise of {args, ms, out}: the callback's arguments and the
 * time from make() to the callback. Rejects after timeoutMs. `out.calls` counts every callback.
 */
const make = (client, name, data, timeoutMs = 5000) => util.firstCallback((cb) => client.rpc.make(name, data, cb), `${client.label}: rpc.make(${name})`, timeoutMs);

/** P-topic messages (capture notation) a library client received, from index `from` */
const rpcTexts = (client, from = 0) =>
  client.wire
    .slice(from)
    .filter((m) => m[0] === 'P')
    .map((m) => m.join('|'));

/** provide + wait for the server's ack */
async function provide(client, name, fn) {
  const from = client.wire.length;
  client.rpc.provide(name, fn);
  await libOf(client).waitWire(client, `P|A|S|${name}`, 3000, from);
}

/**
 * a provider callback for the reject/reroute tests: the first provider asked for request
 * `data.k` rejects, the next one answers `from-<label>`; state[k] = {rejectedBy, answeredBy}
 */
const rerouteHandler = (state, label) => (data, response) => {
  const st = state[data.k];
  if (st.rejectedBy.length === 0) {
    st.rejectedBy.push(label);
    response.reject();
  } else {
    st.answeredBy.push(label);
    response.send(`from-${label}`);
  }
};

// ------------------------------------------------------------------------------ events

const isSync = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && '__sync' in v;
const isEnd = (v, tag) => v !== null && typeof v === 'object' && !Array.isArray(v) && v.__end === tag;

/**
 * A barrier for subscriptions across nodes: emit({__sync: k, ...mark}) every `every` ms until
 * every list (the values some subscribers received) has a sync value carrying `mark`; after
 * that, delivery from this emitter to them works.
 */
async function barrier(emit, mark, lists, what, timeoutMs = 5000, every = 20) {
  const deadline = Date.now() + timeoutMs;
  let k = 0;
  const seen = (l) => l.some((v) => isSync(v) && Object.keys(mark).every((key) => v[key] === mark[key]));
  while (!lists.every(seen)) {
    if (Date.now() > deadline) {
      throw new Error(`${what}: not every subscription effective after ${timeoutMs} ms (sync ${JSON.stringify(mark)} seen by ${lists.filter(seen).length}/${lists.length})`);
    }
    emit(Object.assign({ __sync: k++ }, mark));
    await util.sleep(every);
  }
}

/** typed event payloads of every kind (after an object of the test's own) */
const TYPED_PAYLOADS = ['hello', '', 'with spaces, unicode \u00e9\u2713 and "quotes"', 42.5, -7, 0, 1e21, true, false, null, [1, 'x', { y: [2] }], [], {}];

/** E|EVT messages about `name` on a client's wire (capture notation), from index `from` */
const evtTexts = (client, name, from = 0) =>
  client.wire
    .slice(from)
    .filter((m) => m[0] === 'E' && m[1] === 'EVT' && m[2] === name)
    .map((m) => m.join('|'));

/**
 * a and b each subscribe to an event (`<name>/to-a`, `<name>/to-b`), the other emits 'sync'
 * every 50 ms until both subscriptions took effect; then each emits every payload to the other.
 * -> what a and b received (the payloads, in order), once both have all of them
 */
async function eventsBothWays(a, b, name, payloads, timeoutMs) {
  const atA = [];
  const atB = [];
  const synced = { a: false, b: false };
  a.event.subscribe(`${name}/to-a`, (d) => (d === 'sync' ? (synced.a = true) : atA.push(d)));
  b.event.subscribe(`${name}/to-b`, (d) => (d === 'sync' ? (synced.b = true) : atB.push(d)));
  const deadline = Date.now() + 5000;
  while (!(synced.a && synced.b)) {
    if (Date.now() >= deadline) throw new Error('the subscriptions did not take effect');
    if (!synced.a) b.event.emit(`${name}/to-a`, 'sync');
    if (!synced.b) a.event.emit(`${name}/to-b`, 'sync');
    await util.sleep(50);
  }
  for (const p of payloads) {
    a.event.emit(`${name}/to-b`, p);
    b.event.emit(`${name}/to-a`, p);
  }
  const n = payloads.length;
  await util.waitFor(() => atA.length === n && atB.length === n, timeoutMs, () => `all events (a ${atA.length}, b ${atB.length})`);
  return { atA, atB };
}

// ------------------------------------------------------------------------------ presence

/** client.presence.getAll(cb) -> Promise of the callback's arguments (as an array) */
const getAll = (client, timeoutMs = 3000) => util.callbackArgs((cb) => client.presence.getAll(cb), `${client.label}: presence.getAll`, timeoutMs);

/**
 * presence.getAll until it lists `username` (or timeoutMs): a login reaches the presence replicas
 * of the node's other cores through the cross-core mesh, so a query on another core right after
 * the login can be answered before it arrived. Returns the last answer (the names).
 */
async function getAllIncluding(client, username, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [names] = await getAll(client);
    if (names.includes(username) || Date.now() > deadline) return names;
    await util.sleep(20);
  }
}

/** 2.4.1 acks `U|S|S` with `U|A|S|U`, which the 2.3.4 client does not match: it reports an ACK_TIMEOUT */
const isPresenceAckTimeout = (e) => e.topic === 'U' && e.event === 'ACK_TIMEOUT';

module.exports = {
  libOf,
  openEach,
  closeClients,
  ready,
  snapshot,
  has,
  snapshotUntil,
  recordTexts,
  isWrite,
  replayWrites,
  recordPair,
  settledWrites,
  rawObserver,
  make,
  rpcTexts,
  provide,
  rerouteHandler,
  isSync,
  isEnd,
  barrier,
  TYPED_PAYLOADS,
  evtTexts,
  eventsBothWays,
  getAll,
  getAllIncluding,
  isPresenceAckTimeout,
};
