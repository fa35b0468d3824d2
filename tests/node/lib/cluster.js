'use strict';
/*
 * Helpers for the cluster tests (tests/node/cluster, run by scripts/cluster-tests.sh, which
 * starts a redis-server and three corestream nodes and exports):
 *
 *   CLUSTER_NODES_TCP       the nodes' TCP endpoints (1.x clients), host:port,host:port,host:port
 *   CLUSTER_NODES_HTTP      their HTTP ports (2.x clients at ws://<it>/deepstream, /metrics)
 *   CLUSTER_NODE_PIDS       their PIDs
 *   CLUSTER_REDIS_PORT      the shared redis-server's port (127.0.0.1), its PID and folder:
 *   CLUSTER_REDIS_PID, CLUSTER_REDIS_DIR
 *   CLUSTER_REDIS_SERVER    the redis-server binary
 *   CLUSTER_BIN             the corestream binary
 *   CLUSTER_CONFIG_TEMPLATE a node config with __PORT__, __TCP_PORT__ and __REDIS_PORT__
 *   CLUSTER_WORK            a folder for what tests start themselves: configs, output, and one
 *                           PID file per process in pids/ (the runner stops those still running)
 *
 * A test file that kills something starts its own: startNode(redisPort) and startRedis() give
 * handles that kill by PID; every process started here is SIGKILLed when the test process
 * exits, and its PID file is removed once it is gone.
 */
const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('./util');
const procs = require('./procs');

const { isRunning, killChild } = procs;

const env = (name) => util.env(name, ' (run scripts/cluster-tests.sh)');
const { sleep, freePorts, eventually } = util;

/** the shared nodes: [{tcp, http, pid}] (index 0 = node 1) */
function nodes() {
  const tcp = env('CLUSTER_NODES_TCP').split(',');
  const http = env('CLUSTER_NODES_HTTP').split(',');
  const pids = env('CLUSTER_NODE_PIDS').split(',').map(Number);
  return tcp.map((t, i) => ({ tcp: t, http: http[i], pid: pids[i], label: `node${i + 1}` }));
}

/** the shared redis: {port, pid, dir} */
function sharedRedis() {
  return { port: Number(env('CLUSTER_REDIS_PORT')), pid: Number(env('CLUSTER_REDIS_PID')), dir: env('CLUSTER_REDIS_DIR') };
}

// ---------------------------------------------------------------- processes started here

/** spawns a process, with its PID file in CLUSTER_WORK/pids (content: `marker`, found in its command line) */
function launch(file, args, name, marker) {
  const work = env('CLUSTER_WORK');
  let pidFile = null;
  const child = procs.launch(file, args, {
    out: path.join(work, `extra-${name}.out`),
    err: path.join(work, `extra-${name}.err`),
    onExit: () => {
      try {
        fs.unlinkSync(pidFile);
      } catch (e) {
        /* ignore */
      }
    },
  });
  pidFile = path.join(work, 'pids', String(child.pid));
  fs.writeFileSync(pidFile, marker);
  return child;
}

// ---------------------------------------------------------------- redis

function parseReply(buf, at) {
  // -> [value, next] or null when incomplete
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[at]);
  const line = buf.toString('utf8', at + 1, eol);
  switch (type) {
    case '+':
      return [line, eol + 2];
    case '-': {
      const e = new Error(line);
      e.redisError = true;
      return [e, eol + 2];
    }
    case ':':
      return [Number(line), eol + 2];
    case '$': {
      const len = Number(line);
      if (len < 0) return [null, eol + 2];
      if (buf.length < eol + 2 + len + 2) return null;
      return [buf.toString('utf8', eol + 2, eol + 2 + len), eol + 2 + len + 2];
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return [null, eol + 2];
      const out = [];
      let next = eol + 2;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, next);
        if (!r) return null;
        out.push(r[0]);
        next = r[1];
      }
      return [out, next];
    }
    default:
      throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`);
  }
}

/** one command on a new connection: redisCommand(port, 'SCARD', 'key') -> the reply (errors rejected) */
function redisCommand(port, ...args) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis ${port}: no reply to ${args.join(' ')}`));
    }, 2000);
    socket.on('connect', () => {
      const parts = [`*${args.length}\r\n`];
      for (const a of args) parts.push(`$${Buffer.byteLength(String(a))}\r\n${a}\r\n`);
      socket.write(parts.join(''));
    });
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = parseReply(buf, 0);
      if (r) {
        clearTimeout(timer);
        socket.destroy();
        if (r[0] instanceof Error) reject(r[0]);
        else resolve(r[0]);
      }
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** polls a redis command until pred(reply) holds */
async function waitRedis(port, args, pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await redisCommand(port, ...args);
      if (pred(last)) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what || args.join(' ')} (last reply ${JSON.stringify(String(last))})`);
    }
    await sleep(20);
  }
}

/** how many nodes follow a channel, as Redis counts them (PUBSUB NUMSUB) */
async function channelSubscribers(port, channel) {
  const reply = await redisCommand(port, 'PUBSUB', 'NUMSUB', channel);
  return Number(reply[1]);
}

/** every key matching `pattern` with its value (sets sorted, hashes as objects): for diagnostics */
async function dumpRedis(port, pattern = 'cs:*') {
  const out = {};
  const keys = (await redisCommand(port, 'KEYS', pattern)).sort();
  for (const k of keys) {
    const type = await redisCommand(port, 'TYPE', k);
    if (type === 'set') out[k] = (await redisCommand(port, 'SMEMBERS', k)).sort();
    else if (type === 'hash') {
      const flat = await redisCommand(port, 'HGETALL', k);
      out[k] = {};
      for (let i = 0; i < flat.length; i += 2) out[k][flat[i]] = flat[i + 1];
    } else if (type === 'string') out[k] = await redisCommand(port, 'GET', k);
    else out[k] = `<${type}>`;
  }
  return out;
}

/**
 * Starts a redis-server of our own (persistence as the runner's: AOF fsynced on every write)
 * on a free port in a new folder under CLUSTER_WORK. Returns
 * {port, dir, pid, kill(signal), restart(), stop()}: restart() launches it again on the same
 * port with the same folder.
 */
async function startRedis(label = 'redis') {
  const [port] = await freePorts(1);
  const dir = fs.mkdtempSync(path.join(env('CLUSTER_WORK'), `${label}-`));
  const handle = {
    port,
    dir,
    child: null,
    get pid() {
      return this.child && this.child.pid;
    },
    async launch() {
      this.child = launch(
        env('CLUSTER_REDIS_SERVER'),
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir],
        label,
        dir
      );
      const deadline = Date.now() + 10000;
      for (;;) {
        if (!isRunning(this.child)) throw new Error(`redis-server (${label}) exited during startup (see ${dir}, ${env('CLUSTER_WORK')}/extra-${label}.out)`);
        try {
          if ((await redisCommand(port, 'PING')) === 'PONG') return this;
        } catch (e) {
          /* not yet */
        }
        if (Date.now() > deadline) throw new Error(`redis-server (${label}) did not answer PING on ${port}`);
        await sleep(20);
      }
    },
    kill(signal = 'SIGKILL') {
      return killChild(this.child, signal);
    },
    restart() {
      return this.launch();
    },
    stop() {
      return killChild(this.child, 'SIGTERM');
    },
  };
  await handle.launch();
  return handle;
}

// ---------------------------------------------------------------- corestream nodes

/** GET a path on host:port -> {status, body} */
async function httpGet(hostport, urlPath, timeoutMs = 2000) {
  const { status, body } = await util.request(hostport, { path: urlPath, timeoutMs });
  return { status, body };
}

/** one value of a node's /metrics (`name{labels}`), or undefined */
async function metric(http, name) {
  return (await util.metrics(http, 2000)).get(name.trim());
}

/** are both Redis links of every core of the node up (per /metrics)? */
async function linksUp(http, cores = 2) {
  try {
    const m = await util.metrics(http, 2000);
    return m.get('corestream_redis_links_up{link="command"}') === cores && m.get('corestream_redis_links_up{link="pubsub"}') === cores;
  } catch (e) {
    return false;
  }
}

let nodeCounter = 0;

/**
 * Starts a corestream node of our own (CLUSTER_CONFIG_TEMPLATE, --cores 2) on free ports with
 * the given Redis, and waits until it serves and its Redis links are up. Returns
 * {tcp, http, pid, label, kill(signal), stop()}. `options.permissions`: a rules file (in
 * CLUSTER_WORK) used instead of the template's permissions.yml.
 */
async function startNode(redisPort, label, options = {}) {
  label = label || `node-x${++nodeCounter}`;
  const template = fs.readFileSync(env('CLUSTER_CONFIG_TEMPLATE'), 'utf8');
  for (let attempt = 0; attempt < 3; attempt++) {
    const [http, tcp] = await freePorts(2);
    const config = path.join(env('CLUSTER_WORK'), `${label}-${attempt}.yml`);
    fs.writeFileSync(
      config,
      withPermissions(template, options.permissions).replace(/__PORT__/g, String(http)).replace(/__TCP_PORT__/g, String(tcp)).replace(/__REDIS_PORT__/g, String(redisPort))
    );
    const child = launch(env('CLUSTER_BIN'), ['start', '--config', config, '--cores', '2'], label, config);
    const node = {
      tcp: `127.0.0.1:${tcp}`,
      http: `127.0.0.1:${http}`,
      pid: child.pid,
      label,
      child,
      kill(signal = 'SIGKILL') {
        return killChild(child, signal);
      },
      stop() {
        return killChild(child, 'SIGTERM');
      },
      running() {
        return isRunning(child);
      },
    };
    const deadline = Date.now() + 10000;
    while (isRunning(child) && Date.now() < deadline) {
      if (await linksUp(node.http)) {
        node.startedAt = Date.now();
        return node;
      }
      await sleep(30);
    }
    await killChild(child, 'SIGKILL');
    if (Date.now() > deadline) throw new Error(`${label} did not connect to Redis in time`);
    // exited during startup (a port taken meanwhile?): try again with other ports
  }
  throw new Error(`${label} did not start (see ${env('CLUSTER_WORK')}/extra-${label}.err)`);
}

/** the node config template with its permissions file swapped for `file` (when given) */
function withPermissions(template, file) {
  if (!file) return template;
  const swapped = template.replace('path: ./permissions.yml', `path: ./${path.basename(file)}`);
  if (swapped === template) throw new Error('the node config template names no ./permissions.yml');
  return swapped;
}

module.exports = {
  env,
  sleep,
  nodes,
  sharedRedis,
  freePorts,
  redisCommand,
  waitRedis,
  channelSubscribers,
  dumpRedis,
  startRedis,
  startNode,
  httpGet,
  metric,
  linksUp,
  eventually,
};
