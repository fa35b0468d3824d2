'use strict';
/*
 * Helpers of the permission ("Valve") scenarios in tests/node/permissions, run by
 * scripts/permission-tests.sh TARGET against one server with file auth
 * (tests/fixtures/permissions/users.yml) and the rules of tests/fixtures/permissions/rules.yml
 * (+ presence.yml for the 2.x servers).
 *
 * Environment (set by the script):
 *   PERM_TARGET          deepstream (1.1.1) | deepstream2 (2.4.1) | corestream
 *   PERM_V1_URL          host:port of the 1.x TCP endpoint (targets deepstream, corestream)
 *   PERM_V2_URL          host:port of the 2.x websocket endpoint (targets deepstream2, corestream)
 *   PERM_WORK            a scratch folder (servers started by the tests write their files there)
 *   PERM_NODE8           the Node 8 binary that runs deepstream.io 2.4.1
 *   PERM_CORESTREAM_BIN  the corestream binary
 *
 * A target speaks one or both client generations: `v1` (deepstream.io-client-js 1.1.1 over TCP,
 * raw TCP clients) and `v2` (deepstream.io-client-js 2.3.4 over WebSocket, raw websocket
 * clients). `generations()` lists the target's; a scenario runs once per generation, and the
 * wire it expects is the one the reference server of that generation sends (1.1.1 for v1,
 * 2.4.1 for v2).
 *
 * startServer() starts a server of the target itself, with a rules file of the test's own
 * (startup.test.js, hazards.test.js, crossref.test.js).
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const util = require('./util');
const procs = require('./procs');
const test = require('node:test');

const REPO = path.resolve(__dirname, '..', '..', '..');
const FIXTURES = path.join(REPO, 'tests', 'fixtures');
const PASSWORD = 'password'; // every user of tests/fixtures/permissions/users.yml

const HINT = ' (run scripts/permission-tests.sh)';
const target = () => util.env('PERM_TARGET', HINT);

const TARGET_GENERATIONS = { deepstream: ['v1'], deepstream2: ['v2'], corestream: ['v1', 'v2'] };

function generations() {
  const g = TARGET_GENERATIONS[target()];
  if (!g) throw new Error(`unknown PERM_TARGET ${target()}`);
  return g;
}

const GEN = {
  v1: { name: 'v1', label: '1.x TCP', lib: './ds', rawLib: './raw', urlVar: 'PERM_V1_URL' },
  v2: { name: 'v2', label: '2.x WebSocket', lib: './ds2', rawLib: './raw-ws', urlVar: 'PERM_V2_URL' },
};

/**
 * The client side of one generation:
 *   .name ('v1'|'v2'), .label, .ds (ds.js / ds2.js), .raw (raw.js / raw-ws.js), .url()
 *   .open(user, clients)   a logged-in library client (added to `clients`)
 *   .rawOpen(user, raws)   a logged-in raw client (added to `raws`)
 */
function generation(name, url) {
  const g = GEN[name];
  const ds = require(g.lib);
  const raw = require(g.rawLib);
  const urlOf = url ? () => url : () => util.env(g.urlVar, HINT);
  return {
    name,
    label: g.label,
    ds,
    raw,
    url: urlOf,
    async open(user, clients) {
      const c = await ds.open(urlOf(), { username: user, password: PASSWORD }, `${name}-${user}`);
      clients.push(c);
      return c;
    },
    async rawOpen(user, raws) {
      const c = await raw.connect(urlOf(), { auth: { username: user, password: PASSWORD }, label: `raw-${name}-${user}` });
      raws.push(c);
      return c;
    },
  };
}

/** calls fn(gen) for each client generation of the target (fn registers tests) */
function forEachGeneration(fn) {
  for (const name of generations()) fn(generation(name));
}

/** registers `[v1] title` / `[v2] title` for each client generation of the target: fn(gen) */
function perGeneration(title, opts, fn) {
  forEachGeneration((g) => test(`[${g.name}] ${title}`, opts, () => fn(g)));
}

/**
 * registers a test of one client generation only (`title (2.x only)`): fn(gen). On a target
 * without that generation, a skipped test whose name says why.
 */
function onlyGeneration(name, title, opts, fn) {
  const only = name === 'v2' ? '2.x only' : '1.x only';
  if (generations().includes(name)) {
    test(`[${name}] ${title} (${only})`, opts, () => fn(generation(name)));
  } else {
    const why = `target ${target()} has no ${GEN[name].label} endpoint`;
    test(`${title} (${only}: skipped, ${why})`, { skip: why }, () => {});
  }
}

/** runs fn(clients, raws) and closes every client it opened */
async function session(fn) {
  const clients = [];
  const raws = [];
  try {
    return await fn(clients, raws);
  } finally {
    await closeAll(clients, raws);
  }
}

/** closes library clients (of either generation) and raw clients */
async function closeAll(clients, raws) {
  await Promise.all([
    ...clients.filter(Boolean).map((c) => (c.sent ? require('./ds2') : require('./ds')).close(c)),
    ...raws.filter(Boolean).map((c) => c.close()),
  ]);
}

/**
 * Sends `text` (capture notation) on raw client `c` and resolves with the messages received
 * after it (capture notation, pings left out) once `expectedCount` arrived and then `quietMs`
 * passed with nothing more. Rejects after timeoutMs.
 */
async function exchange(c, text, expectedCount = 1, quietMs = 100, timeoutMs = 3000) {
  const from = c.received.length;
  c.sendText(text);
  await util.waitFor(() => c.texts(from).length >= expectedCount, timeoutMs, () => `${c.label}: ${expectedCount} replies to ${text} (got ${JSON.stringify(c.texts(from))})`);
  await quiet(c, quietMs);
  return c.texts(from);
}

/**
 * R|CR on raw client `c` (subscribes; creates the record when it is new) -> {version, data} of
 * the R|R reply
 */
async function rawRead(c, name, timeoutMs = 3000) {
  const from = c.received.length;
  c.send('R', 'CR', name);
  const m = await c.waitFor((f) => f[0] === 'R' && f[1] === 'R' && f[2] === name, timeoutMs, from, `R|R|${name}`);
  return { version: Number(m[3]), data: JSON.parse(m[4]) };
}

/** R|SN on raw client `c` -> the reply in capture notation */
async function rawSnapshot(c, name, timeoutMs = 3000) {
  const from = c.received.length;
  c.send('R', 'SN', name);
  const m = await c.waitFor((f) => f[0] === 'R' && (f[1] === 'R' || f[1] === 'E') && f.includes(name), timeoutMs, from, `a snapshot of ${name}`);
  return m.join('|');
}

/** waits until raw client `c` received nothing (but pings) for `ms` */
async function quiet(c, ms = 100) {
  let n = c.texts().length;
  for (;;) {
    await util.sleep(ms);
    const m = c.texts().length;
    if (m === n) return;
    n = m;
  }
}

// --------------------------------------------------------------------- servers of the tests

/** the rules dialect the target reads: v1 for 1.1.1 (it refuses a presence section), else v2 (2.4.1 requires one) */
const rulesDialect = () => (target() === 'deepstream' ? 'v1' : 'v2');

function readFixture(name) {
  return fs.readFileSync(path.join(FIXTURES, 'permissions', name), 'utf8');
}

/** the config template of the target with its ports and files filled in */
function configText(httpPort, tcpPort) {
  const v1 = target() === 'deepstream';
  const template = fs.readFileSync(path.join(FIXTURES, v1 ? 'file.yml' : 'v2-file.yml'), 'utf8');
  return template
    .replace(/__PORT__/g, String(httpPort))
    .replace(/__TCP_PORT__/g, String(tcpPort))
    .replace(/\.\/v2-permissions\.yml/g, './permissions.yml');
}

function launchCommand(configPath) {
  switch (target()) {
    case 'deepstream':
      return [process.execPath, [path.join(REPO, 'tests/node/start-deepstream-1.js'), configPath]];
    case 'deepstream2':
      return [util.env('PERM_NODE8', HINT), [path.join(REPO, 'tests/node/start-deepstream-2.js'), configPath]];
    case 'corestream':
      return [util.env('PERM_CORESTREAM_BIN', HINT), ['start', '--config', configPath, '--cores', '2']];
    default:
      throw new Error(`unknown PERM_TARGET ${target()}`);
  }
}

/**
 * Starts a server of the target with file auth and the permissions file `rules` (YAML text),
 * on free loopback ports. Resolves once it is ready (the reference prints `ready`; corestream
 * listens on its websocket port) or has exited, or after timeoutMs (then .state is
 * 'timeout'). The result:
 *   .state      'ready' | 'exited' | 'timeout'
 *   .exit       Promise of {code, signal}
 *   .stdout(), .stderr()   what it printed so far
 *   .gen(name)  the client side of generation `name` (see generation()) for this server
 *   .stop()     SIGTERM by PID, then SIGKILL
 */
async function startServer(rules, label, timeoutMs = 10000) {
  const base = process.env.PERM_WORK || os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, `${label.replace(/[^a-z0-9-]/gi, '-')}-`));
  const [httpPort, tcpPort] = await util.freePorts(2);
  fs.copyFileSync(path.join(FIXTURES, 'permissions', 'users.yml'), path.join(dir, 'users.yml'));
  fs.writeFileSync(path.join(dir, 'permissions.yml'), rules);
  const configPath = path.join(dir, 'config.yml');
  fs.writeFileSync(configPath, configText(httpPort, tcpPort));
  const out = path.join(dir, 'stdout.log');
  const err = path.join(dir, 'stderr.log');
  const [file, args] = launchCommand(configPath);
  const child = procs.launch(file, args, { out, err });
  const read = (f) => {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch (e) {
      return '';
    }
  };
  const server = {
    dir,
    child,
    exit: child.exited,
    state: 'starting',
    exitStatus: null,
    stdout: () => read(out),
    stderr: () => read(err),
    output: () => read(out) + read(err),
    gen: (name) => generation(name, `127.0.0.1:${name === 'v1' ? tcpPort : httpPort}`),
    stop: () => procs.killChild(child, 'SIGTERM', 3000),
  };
  child.exited.then((status) => {
    server.exitStatus = status;
    server.state = 'exited';
  });
  const readyNow = async () => {
    if (target() === 'corestream') {
      return new Promise((resolve) => {
        const s = require('net').createConnection({ host: '127.0.0.1', port: httpPort }, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
    }
    return /^ready$/m.test(server.stdout());
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (server.state === 'exited') break;
    if (await readyNow()) {
      if (server.state !== 'exited') server.state = 'ready';
      break;
    }
    if (Date.now() > deadline) {
      server.state = 'timeout';
      break;
    }
    await util.sleep(50);
  }
  if (server.state === 'exited') await child.exited;
  return server;
}

module.exports = {
  PASSWORD,
  target,
  generations,
  generation,
  forEachGeneration,
  perGeneration,
  onlyGeneration,
  session,
  closeAll,
  exchange,
  quiet,
  rawRead,
  rawSnapshot,
  rulesDialect,
  readFixture,
  startServer,
};
