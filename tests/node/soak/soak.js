'use strict';
/*
 * The soak run (scripts/soak.sh): two corestream nodes clustered through a real redis-server,
 * mixed load from the real clients for a configured time, one node killed (SIGKILL) and
 * restarted now and then, and at the end the checks that matter after a long night:
 *
 *   - no acknowledged record write is lost: every record ends at (or past) the last value its
 *     writer had acknowledged (2.3.4 `set` with a write-ack callback), read back on each node;
 *   - versions are gapless on every node: raw observers (one per node) see each record's
 *     versions go up by exactly one while their connection lasts;
 *   - RSS is flat: the slope of each node process's resident memory over its life (after a
 *     minute of warm-up), in KiB per minute; only the second node is ever killed, so the first
 *     one's slope covers the whole run;
 *   - no panic in the nodes' logs.
 *
 * Load (each actor reconnects when its node dies): event pairs over TCP (1.1.1), WebSocket
 * (2.3.4) and engine.io (1.1.1 built as in a browser), record writers with acks and raw
 * observers, RPC providers and requesters on both nodes, presence logins and logouts,
 * clients that connect and leave, and slow readers that subscribe to a busy event and stop
 * reading (the server must cut them off, not buffer for them).
 *
 *   node tests/node/soak/soak.js --seconds 1800 --bin target/release/corestream [--kill-every 45]
 *
 * Prints a report and exits 1 when a check fails.
 */
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const deepstream1 = require('deepstream.io-client-js');
const deepstream2 = require('deepstream.io-client-js-2');
const { browserClient } = require('../lib/ds');
const { sleep, freePorts, waitPort } = require('../lib/util');
const { launch: spawnLogged } = require('../lib/procs');
const { US, RS } = require('../lib/wire');

function options() {
  const args = process.argv.slice(2);
  const get = (name, fallback) => {
    const at = args.indexOf(`--${name}`);
    return at >= 0 ? args[at + 1] : fallback;
  };
  return {
    seconds: Number(get('seconds', '60')),
    bin: path.resolve(get('bin', 'target/release/corestream')),
    killEvery: Number(get('kill-every', '20')),
    records: Number(get('records', '20')),
  };
}

// ------------------------------------------------------------------------------ processes

function launch(file, args, logFile) {
  return spawnLogged(file, args, { out: logFile });
}

function rssKib(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const line = status.split('\n').find((l) => l.startsWith('VmRSS:'));
    return line ? Number(line.replace(/\D+/g, '')) : null;
  } catch (e) {
    return null;
  }
}

class Node {
  constructor(name, work, bin, redisPort, ports) {
    Object.assign(this, { name, work, bin, redisPort });
    [this.http, this.tcp] = ports;
    this.lives = [];
  }

  async start() {
    const config = path.join(this.work, `${this.name}.yml`);
    fs.writeFileSync(config, [
      `serverName: ${this.name}`,
      'host: 127.0.0.1', `port: ${this.http}`, 'tcpHost: 127.0.0.1', `tcpPort: ${this.tcp}`,
      'logLevel: WARN', 'rpcAckTimeout: 1000', 'rpcTimeout: 3000', 'heartbeatInterval: 5000',
      'maxOutboundBufferSize: 1048576',
      'plugins:', '  message:', '    name: redis', '    options:', '      host: 127.0.0.1', `      port: ${this.redisPort}`,
      'clusterKeepAliveInterval: 200', 'clusterActiveCheckInterval: 200', 'clusterNodeInactiveTimeout: 1500', '',
    ].join('\n'));
    this.log = path.join(this.work, `${this.name}.log`);
    this.child = launch(this.bin, ['start', '--config', config, '--cores', '1'], this.log);
    await waitPort(this.tcp, 10000);
    this.life = { pid: this.child.pid, started: Date.now(), samples: [] };
    this.lives.push(this.life);
  }

  async kill() {
    this.life = null; // no more samples of a dying process
    process.kill(this.child.pid, 'SIGKILL');
    await this.child.exited;
  }

  sample() {
    const rss = this.child && rssKib(this.child.pid);
    if (rss !== null && this.life) this.life.samples.push([Date.now(), rss]);
  }
}

// ------------------------------------------------------------------------------ actors

const stats = {
  events: 0, eventsLost: 0, writesAcked: 0, writeErrors: 0, rpcs: 0, rpcErrors: 0,
  logins: 0, slowCutOff: 0, reconnects: 0, versionGaps: [], observedUpdates: 0,
};
let running = true;

/** runs `body(node)` against a node, forever, reconnecting after failures */
async function actor(name, nodes, body) {
  let turn = 0;
  while (running) {
    const node = nodes[turn++ % nodes.length];
    try {
      await body(node);
    } catch (e) {
      stats.reconnects++;
      await sleep(200);
    }
  }
}

function client2(node, username) {
  return new Promise((resolve, reject) => {
    const c = deepstream2(`127.0.0.1:${node.http}`, { maxReconnectAttempts: 0, subscriptionTimeout: 5000, recordReadTimeout: 5000, silentDeprecation: true });
    c.on('error', () => {});
    const timer = setTimeout(() => { c.close(); reject(new Error('login timeout')); }, 5000);
    c.login({ username }, (ok) => {
      clearTimeout(timer);
      if (ok) { stats.logins++; resolve(c); } else { c.close(); reject(new Error('login refused')); }
    });
    c.on('connectionStateChanged', (state) => { if (state === 'CLOSED' || state === 'ERROR') c.dead = true; });
  });
}

function client1(node, username, browser) {
  return new Promise((resolve, reject) => {
    let c;
    if (browser) {
      c = browserClient(`127.0.0.1:${node.http}`);
    } else {
      c = deepstream1(`127.0.0.1:${node.tcp}`, { maxReconnectAttempts: 0 });
    }
    c.on('error', () => {});
    const timer = setTimeout(() => { c.close(); reject(new Error('login timeout')); }, 5000);
    c.login({ username }, (ok) => {
      clearTimeout(timer);
      if (ok) { stats.logins++; resolve(c); } else { c.close(); reject(new Error('login refused')); }
    });
    c.on('connectionStateChanged', (state) => { if (state === 'CLOSED' || state === 'ERROR') c.dead = true; });
  });
}

/** an event pair on one node and one kind of client: emit, expect it back within 5 s */
async function eventPair(kind, node) {
  const make = (u) => (kind === 'ws' ? client2(node, u) : client1(node, u, kind === 'eio'));
  const sub = await make(`sub-${kind}`);
  const pub = await make(`pub-${kind}`);
  const topic = `soak/${kind}/${Math.random().toString(36).slice(2)}`;
  let last = 0;
  sub.event.subscribe(topic, (n) => { last = n; stats.events++; });
  await sleep(300);
  try {
    for (let n = 1; running && !sub.dead && !pub.dead; n++) {
      pub.event.emit(topic, n);
      const deadline = Date.now() + 5000;
      while (last < n && Date.now() < deadline && !sub.dead) await sleep(5);
      if (last < n) { stats.eventsLost++; throw new Error('event lost'); }
      await sleep(20);
    }
  } finally {
    sub.close();
    pub.close();
  }
}

/** one writer per record: `set` with a write-ack callback; remembers the last acked value */
async function writer(record, acked, node) {
  const c = await client2(node, `writer-${record}`);
  const r = c.record.getRecord(record);
  await new Promise((resolve, reject) => {
    r.whenReady(resolve);
    setTimeout(() => reject(new Error('record not ready')), 5000);
  });
  let n = Math.max(acked.get(record) || 0, (r.get() && r.get().n) || 0);
  try {
    while (running && !c.dead) {
      n++;
      const value = n;
      const ok = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), 5000);
        r.set({ n: value, by: 'soak' }, (error) => { clearTimeout(timer); resolve(!error); });
      });
      if (!ok) { stats.writeErrors++; throw new Error('write not acknowledged'); }
      stats.writesAcked++;
      acked.set(record, Math.max(acked.get(record) || 0, value));
      await sleep(25);
    }
  } finally {
    c.close();
  }
}

/** a raw TCP observer of every record on one node: versions must go up by one per update */
function observe(node, records) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: '127.0.0.1', port: node.tcp });
    const versions = new Map();
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      socket.write(`C${US}CHR${US}x${RS}A${US}REQ${US}{"username":"observer"}${RS}`);
      for (const record of records) socket.write(`R${US}CR${US}${record}${RS}`);
    });
    socket.on('data', (data) => {
      buffer += data;
      let end;
      while ((end = buffer.indexOf(RS)) >= 0) {
        const fields = buffer.slice(0, end).split(US);
        buffer = buffer.slice(end + 1);
        if (fields[0] !== 'R') continue;
        const [, action, name, version] = fields;
        if (action === 'R') versions.set(name, Number(version));
        if (action === 'U' || action === 'P') {
          stats.observedUpdates++;
          const before = versions.get(name);
          if (before !== undefined && Number(version) !== before + 1) {
            stats.versionGaps.push(`${node.name} ${name}: ${before} -> ${version}`);
          }
          versions.set(name, Number(version));
        }
      }
    });
    const stop = setInterval(() => { if (!running) socket.destroy(); }, 200);
    socket.on('close', () => { clearInterval(stop); running ? reject(new Error('closed')) : resolve(); });
    socket.on('error', () => {});
  });
}

async function rpcActor(node, nodes) {
  const provider = await client2(node, 'provider');
  provider.rpc.provide('soak/add', (data, response) => response.send(data.a + data.b));
  const requester = await client2(nodes[(nodes.indexOf(node) + 1) % nodes.length], 'requester');
  await sleep(300);
  try {
    while (running && !provider.dead && !requester.dead) {
      const a = Math.floor(Math.random() * 1000);
      const ok = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), 5000);
        requester.rpc.make('soak/add', { a, b: 1 }, (error, result) => {
          clearTimeout(timer);
          resolve(!error && result === a + 1);
        });
      });
      if (ok) stats.rpcs++; else { stats.rpcErrors++; throw new Error('rpc failed'); }
      await sleep(30);
    }
  } finally {
    provider.close();
    requester.close();
  }
}

/** logs in, looks at presence, leaves: churn of sessions and presence */
async function churn(node) {
  const c = await client2(node, `churn-${Math.floor(Math.random() * 50)}`);
  await new Promise((resolve) => c.presence.getAll(() => resolve()));
  await sleep(100 + Math.random() * 400);
  c.close();
}

/** subscribes to the busy event and never reads: the node must cut it off */
async function slowReader(node) {
  const socket = net.createConnection({ host: '127.0.0.1', port: node.tcp });
  socket.on('error', () => {});
  socket.write(`C${US}CHR${US}x${RS}A${US}REQ${US}{"username":"sleeper"}${RS}E${US}S${US}soak/busy${RS}`);
  socket.pause();
  const closed = new Promise((resolve) => socket.on('close', resolve));
  // A paused socket does not notice the server's close: read again after a while, and a
  // socket the server cut off ends as soon as what the kernel had buffered is drained.
  await sleep(5000);
  socket.on('data', () => {});
  socket.resume();
  const result = await Promise.race([closed.then(() => 'cut'), sleep(10000).then(() => 'alive')]);
  if (result === 'cut') stats.slowCutOff++;
  socket.destroy();
}

async function busyPublisher(node) {
  const c = await client2(node, 'busy');
  const payload = 'x'.repeat(8192);
  try {
    while (running && !c.dead) {
      for (let i = 0; i < 20; i++) c.event.emit('soak/busy', payload);
      await sleep(20);
    }
  } finally {
    c.close();
  }
}

// ------------------------------------------------------------------------------ checks

/** reads a record on a node with a fresh client */
async function readBack(node, record) {
  const c = await client2(node, 'checker');
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${record}: no snapshot`)), 5000);
      c.record.snapshot(record, (error, data) => { clearTimeout(timer); error ? reject(new Error(error)) : resolve(data); });
    });
  } finally {
    c.close();
  }
}

/** least-squares slope of (minutes, KiB) */
function slope(samples) {
  const n = samples.length;
  if (n < 10) return null;
  const xs = samples.map(([t]) => t / 60000);
  const ys = samples.map(([, r]) => r);
  const mx = xs.reduce((a, b) => a + b) / n;
  const my = ys.reduce((a, b) => a + b) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) { num += (xs[i] - mx) * (ys[i] - my); den += (xs[i] - mx) ** 2; }
  return den === 0 ? 0 : num / den;
}

async function main() {
  const opts = options();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'corestream-soak-'));
  const [redisPort, ...nodePorts] = await freePorts(5);
  const redis = launch('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', work], path.join(work, 'redis.log'));
  await waitPort(redisPort, 10000);
  const nodes = [new Node('soak-a', work, opts.bin, redisPort, nodePorts.slice(0, 2)), new Node('soak-b', work, opts.bin, redisPort, nodePorts.slice(2, 4))];
  for (const node of nodes) await node.start();
  console.log(`soak: ${opts.seconds} s, nodes on ${nodes.map((n) => `tcp ${n.tcp}/http ${n.http}`).join(', ')}, redis ${redisPort}, work ${work}`);

  const records = Array.from({ length: opts.records }, (_, i) => `soak/record-${i}`);
  const acked = new Map();
  const actors = [];
  for (const kind of ['tcp', 'ws', 'eio']) actors.push(actor(`events-${kind}`, nodes, (node) => eventPair(kind, node)));
  records.forEach((record, i) => actors.push(actor(`writer-${i}`, i % 2 ? nodes : [...nodes].reverse(), (node) => writer(record, acked, node))));
  for (const node of nodes) actors.push(actor(`observer-${node.name}`, [node], () => observe(node, records)));
  actors.push(actor('rpc', nodes, (node) => rpcActor(node, nodes)));
  for (let i = 0; i < 3; i++) actors.push(actor(`churn-${i}`, nodes, churn));
  actors.push(actor('busy', nodes, busyPublisher));
  actors.push(actor('slow', nodes, slowReader));

  const sampler = setInterval(() => nodes.forEach((n) => n.sample()), 1000);
  const ends = Date.now() + opts.seconds * 1000;
  let kills = 0;
  while (Date.now() < ends) {
    await sleep(Math.min(opts.killEvery * 1000, Math.max(0, ends - Date.now())));
    if (Date.now() >= ends - 5000) break;
    // Always the same node: the other one lives through the whole run, so its RSS slope
    // covers all of it.
    const victim = nodes[1];
    kills++;
    console.log(`soak: ${Math.round((opts.seconds * 1000 - (ends - Date.now())) / 1000)} s: killing ${victim.name} (SIGKILL) and restarting it`);
    await victim.kill();
    await sleep(1000);
    await victim.start();
  }
  running = false;
  clearInterval(sampler);
  await Promise.race([Promise.all(actors), sleep(10000)]);
  await sleep(2000);

  const failures = [];
  let lost = 0;
  for (const record of records) {
    for (const node of nodes) {
      const data = await readBack(node, record).catch((e) => ({ error: e.message }));
      const want = acked.get(record) || 0;
      if (!data || data.error || (data.n || 0) < want) {
        lost++;
        failures.push(`${record} on ${node.name}: ${JSON.stringify(data)} but ${want} was acknowledged`);
      }
    }
  }
  const panics = nodes.map((n) => fs.readFileSync(n.log, 'utf8')).join('\n').split('\n').filter((l) => /panicked/.test(l));
  if (panics.length) failures.push(`panics in the logs:\n${panics.slice(0, 5).join('\n')}`);
  if (stats.versionGaps.length) failures.push(`version gaps:\n${stats.versionGaps.slice(0, 10).join('\n')}`);

  console.log('\n## soak report');
  console.log(`duration ${opts.seconds} s, node kills ${kills}`);
  console.log(`events delivered ${stats.events} (lost ${stats.eventsLost}, each followed by a reconnect)`);
  console.log(`record writes acknowledged ${stats.writesAcked} (unacknowledged ${stats.writeErrors}); acknowledged writes lost: ${lost}`);
  console.log(`record updates observed ${stats.observedUpdates}; version gaps ${stats.versionGaps.length}`);
  console.log(`rpc calls ${stats.rpcs} (failed ${stats.rpcErrors}); logins ${stats.logins}; slow readers cut off ${stats.slowCutOff}; actor restarts ${stats.reconnects}`);
  console.log('RSS per node process (KiB): first, last, slope after the first minute');
  for (const node of nodes) {
    for (const life of node.lives) {
      const warm = life.samples.filter(([t]) => t - life.started >= 60000);
      const s = slope(warm);
      const first = life.samples[0] ? life.samples[0][1] : '-';
      const last = life.samples.length ? life.samples[life.samples.length - 1][1] : '-';
      console.log(`  ${node.name} pid ${life.pid}: ${first} -> ${last} over ${Math.round(((life.samples.length ? life.samples[life.samples.length - 1][0] : life.started) - life.started) / 1000)} s, slope ${s === null ? 'n/a (lived < 70 s)' : `${s.toFixed(1)} KiB/min`}`);
    }
  }
  for (const node of nodes) await node.kill().catch(() => {});
  process.kill(redis.pid, 'SIGKILL');
  if (failures.length) {
    console.log(`\nFAILED:\n${failures.join('\n')}`);
    process.exit(1);
  }
  console.log('\nsoak: every check passed');
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
