'use strict';
// The cost of authenticating at nginx (run by `KERBEROS_BENCH=1 scripts/kerberos-tests.sh`,
// after the tests; not a test: it prints numbers and fails only when something breaks).
//
// Three nginx instances from `corestream nginx`, all with TLS, same machine, same run:
//   kerberos  auth_request to nginx/corestream-spnego.py -> the proxy-header node
//   basic     auth_basic (htpasswd, apr1)                 -> the same node
//   open      no auth                                     -> a node with open auth
// 1. session starts per second: WebSocket upgrade (TLS handshake included), C|CH handshake and
//    login answered, then close; SESSIONS per variant, CONCURRENCY at a time; every Kerberos
//    session carries a fresh token (a browser makes one per connection), made before timing.
// 2. event latency A -> B on an open WebSocket, one in flight, EVENTS round trips:
//    authenticated (Kerberos) against unauthenticated (open). The identity is checked once, at
//    the upgrade, so these must be within noise of each other.
// Variants alternate (ABC ABC ABC) to spread the machine's noise; the medians of the rounds are compared.
const rawws = require('../lib/raw-ws');
const krb = require('../lib/kerberos');
const util = require('../lib/util');

const SESSIONS = Number(process.env.BENCH_SESSIONS || 300);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY || 8);
const EVENTS = Number(process.env.BENCH_EVENTS || 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 3);

const basicHeader = 'Basic ' + Buffer.from('carol:secret').toString('base64');

async function sessionStarts(url, headerOf) {
  let next = 0;
  const started = process.hrtime.bigint();
  async function worker() {
    while (next < SESSIONS) {
      const i = next++;
      const headers = headerOf(i);
      const c = await rawws.connect(`wss://${url}`, { auth: {}, label: `s${i}` }, headers ? { headers } : {});
      await c.close();
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return SESSIONS / seconds;
}

async function eventLatency(url, headers) {
  const opts = headers ? { headers } : {};
  const a = await rawws.connect(`wss://${url}`, { auth: {}, label: 'a' }, opts);
  const b = await rawws.connect(`wss://${url}`, { auth: {}, label: 'b' }, opts);
  try {
    const name = util.uid('lat');
    a.send('E', 'S', name);
    await a.waitFor((m) => m[0] === 'E' && m[1] === 'A' && m[2] === 'S');
    const samples = [];
    for (let i = 0; i < EVENTS; i++) {
      const from = a.received.length;
      const t0 = process.hrtime.bigint();
      b.send('E', 'EVT', name, `S${i}`);
      await a.waitFor((m) => m[1] === 'EVT' && m[3] === `S${i}`, 3000, from);
      samples.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    samples.sort((x, y) => x - y);
    return { p50: samples[Math.floor(samples.length / 2)], p99: samples[Math.floor(samples.length * 0.99)] };
  } finally {
    await a.close();
    await b.close();
  }
}

/** a rejection handler naming the variant that failed */
const fail = (variant) => (err) => {
  throw new Error(`${variant}: ${err.message}`);
};

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

async function main() {
  const kerberosUrl = krb.env('KRB_NGINX_URL');
  const basicUrl = krb.env('KRB_NGINX_BASIC_URL');
  const openUrl = krb.env('KRB_NGINX_OPEN_URL');
  const cache = krb.kinit('alice');
  const starts = { kerberos: [], basic: [], open: [] };
  const latency = { kerberos: [], open: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const tokens = krb.negotiateMany(cache, SESSIONS);
    starts.kerberos.push(await sessionStarts(kerberosUrl, (i) => ({ Authorization: tokens[i] })).catch(fail('kerberos')));
    starts.basic.push(await sessionStarts(basicUrl, () => ({ Authorization: basicHeader })).catch(fail('basic')));
    starts.open.push(await sessionStarts(openUrl, () => null));
    latency.kerberos.push(await eventLatency(kerberosUrl, { Authorization: krb.negotiate(cache) }));
    latency.open.push(await eventLatency(openUrl, null));
  }
  const fmt = (xs) => xs.map((x) => x.toFixed(0)).join(' / ');
  console.log(`# session starts per second through nginx (TLS, WebSocket upgrade + login + close), ${SESSIONS} sessions, ${CONCURRENCY} at a time, ${ROUNDS} rounds`);
  console.log(`#   no auth   ${fmt(starts.open)}`);
  console.log(`#   basic     ${fmt(starts.basic)}  (${(median(starts.basic) / median(starts.open)).toFixed(2)}x no auth)`);
  console.log(`#   kerberos  ${fmt(starts.kerberos)}  (${(median(starts.kerberos) / median(starts.open)).toFixed(2)}x no auth)`);
  console.log(`# event latency A->B on an open WebSocket through nginx, one in flight, ${EVENTS} events (µs, p50 / p99 per round)`);
  for (const [name, xs] of Object.entries(latency)) {
    console.log(`#   ${name.padEnd(9)} ${xs.map((x) => `${x.p50.toFixed(0)} / ${x.p99.toFixed(0)}`).join('   ')}`);
  }
  const ratio = median(latency.kerberos.map((x) => x.p50)) / median(latency.open.map((x) => x.p50));
  console.log(`#   p50 authenticated / unauthenticated: ${ratio.toFixed(2)}`);
  krb.cleanCaches();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
