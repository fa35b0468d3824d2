// engine.io-client@3 (the real engine.io protocol 3 client, from npm) against an
// engine.io v3 echo endpoint: every message packet sent is expected back, in order.
//
//   EIO_URL=http://127.0.0.1:PORT EIO_PATH=/engine.io node --test tests/conformance/eio3-client.test.js
//
// Usually run through scripts/conformance/eio3-client.sh. The idle/heartbeat tests
// wait 2 x (pingInterval + pingTimeout) as the server advertises them: run the
// server with pingInterval 300 / pingTimeout 200 to keep the file under ~15 s
// (they are skipped when the server advertises more than 10 s in all).
"use strict";

const { describe, it, after } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const eio = require("engine.io-client");

const BASE = process.env.EIO_URL;
const PATH = process.env.EIO_PATH || "/engine.io";
if (!BASE) {
  throw new Error("set EIO_URL (e.g. http://127.0.0.1:6020) and EIO_PATH (e.g. /engine.io)");
}

const OPEN_TIMEOUT = 5000;
const MAX_IDLE_WAIT = 10000;
const LARGE = 1024 * 1024; // 1 MiB

const ENDPOINT = `${BASE}${PATH.replace(/\/$/, "")}/`;

const sockets = new Set();
after(() => {
  for (const s of sockets) s.close();
});

// Opens a socket; resolves { socket, handshake, inbox } once it is open.
// `inbox.next(n)` resolves the next n messages (Buffers for binary, strings for text).
function open(opts = {}) {
  return new Promise((resolve, reject) => {
    const socket = eio(BASE, { path: PATH, ...opts });
    sockets.add(socket);
    const received = [];
    const waiters = [];
    let handshake = null;
    let closed = null;
    const pump = () => {
      while (waiters.length && received.length >= waiters[0].n) {
        const w = waiters.shift();
        clearTimeout(w.timer);
        w.resolve(received.splice(0, w.n));
      }
    };
    socket.on("message", (data) => {
      // engine.io-client 3 hands an empty message packet ("4") over as undefined.
      if (data === undefined) data = "";
      received.push(typeof data === "string" ? data : Buffer.from(data));
      pump();
    });
    socket.on("close", (reason, desc) => {
      closed = { reason, desc };
      sockets.delete(socket);
      for (const w of waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error(`socket closed (${reason}) with ${received.length} of ${w.n} messages`));
      }
    });
    const inbox = {
      next(n = 1, timeout = 5000) {
        return new Promise((res, rej) => {
          if (closed) return rej(new Error(`socket already closed (${closed.reason})`));
          const w = { n, resolve: res, reject: rej };
          w.timer = setTimeout(() => {
            waiters.splice(waiters.indexOf(w), 1);
            rej(new Error(`timed out: ${received.length} of ${n} messages after ${timeout} ms`));
          }, timeout);
          waiters.push(w);
          pump();
        });
      },
      get closed() {
        return closed;
      },
    };
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no open within ${OPEN_TIMEOUT} ms`));
    }, OPEN_TIMEOUT);
    socket.on("handshake", (data) => {
      handshake = data;
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`connection error: ${err && (err.message || err.description || err)}`));
    });
    socket.once("open", () => {
      clearTimeout(timer);
      resolve({ socket, handshake, inbox });
    });
  });
}

function waitClose(socket, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no close within ${timeout} ms`)), timeout);
    socket.once("close", (reason) => {
      clearTimeout(t);
      resolve(reason);
    });
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Sends each message and checks that exactly the same come back, in order.
async function roundTrip({ socket, inbox }, messages, timeout) {
  for (const m of messages) socket.send(m);
  const got = await inbox.next(messages.length, timeout);
  for (let i = 0; i < messages.length; i++) {
    const want = messages[i];
    if (typeof want === "string") {
      assert.equal(typeof got[i], "string", `message ${i}: expected text back`);
      if (got[i] !== want) {
        assert.fail(`message ${i}: text differs (sent ${want.length} UTF-16 units, got ${got[i].length})`);
      }
    } else {
      assert.ok(Buffer.isBuffer(got[i]), `message ${i}: expected binary back, got ${typeof got[i]}`);
      assert.ok(Buffer.from(want).equals(got[i]), `message ${i}: binary differs (sent ${want.length} bytes, got ${got[i].length})`);
    }
  }
}

// Edge-case strings: empty, packet-type look-alikes, payload framing characters,
// 2-, 3- and 4-byte UTF-8 (the last is a UTF-16 surrogate pair), a NUL.
const EDGE = ["", "0", "4", ":", "1:2", "6:4hello", "b4AQID", "é", "€", "𝄞", "héllo wörld 😀 中文", "\u0000nul", "a\nb\r\nc", '{"json":[1,2,3]}'];

function smallMessages(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    if (i % 7 === 3) out.push(Buffer.from([i & 0xff, 0, 255, (i >> 8) & 0xff]));
    else out.push(`m${i} ${EDGE[i % EDGE.length]}`);
  }
  return out;
}

function unicodeText(approxBytes) {
  const unit = "aé€𝄞😀中"; // 1+2+3+4+4+3 = 17 bytes of UTF-8, 8 UTF-16 units
  return unit.repeat(Math.ceil(approxBytes / 17));
}

// Under Node, engine.io-client 3's polling always asks for b64=1 (its XMLHttpRequest
// has no responseType), so binary payload encoding over polling, what browsers use,
// is checked with raw requests in "raw polling" below.
const TRANSPORTS = [
  { name: "polling (b64=1)", opts: { transports: ["polling"] } },
  { name: "websocket", opts: { transports: ["websocket"] } },
  { name: "websocket, base64 (b64=1)", opts: { transports: ["websocket"], forceBase64: true } },
];

describe("handshake", () => {
  it("polling only: opens over polling and advertises the websocket upgrade", async () => {
    const c = await open({ transports: ["polling"] });
    assert.equal(c.socket.transport.name, "polling");
    assert.equal(typeof c.handshake.sid, "string");
    assert.ok(c.handshake.sid.length > 0);
    assert.deepEqual(c.handshake.upgrades, ["websocket"]);
    assert.equal(typeof c.handshake.pingInterval, "number");
    assert.equal(typeof c.handshake.pingTimeout, "number");
    c.socket.close();
  });

  it("websocket only: opens over websocket with no further upgrades", async () => {
    const c = await open({ transports: ["websocket"] });
    assert.equal(c.socket.transport.name, "websocket");
    assert.equal(typeof c.handshake.sid, "string");
    assert.deepEqual(c.handshake.upgrades, []);
    c.socket.close();
  });
});

describe("websocket handshake timing", () => {
  // A raw WebSocket client (ws, as the official protocol suite uses it) that waits for
  // `open` and only then attaches its `message` listener, as `await waitFor(socket, "open");
  // await waitFor(socket, "message")` does. If the open packet travels in the same read as the
  // 101 response, ws emits it before that listener exists and it is lost: the server must
  // write it after the upgrade completed, as real engine.io servers do.
  const WebSocket = require("ws");
  const { once } = require("node:events");
  it("a listener attached after `open` still receives the open packet (20 connections)", async () => {
    const wsUrl = ENDPOINT.replace(/^http/, "ws") + "?EIO=3&transport=websocket";
    for (let i = 0; i < 20; i++) {
      const socket = new WebSocket(wsUrl);
      await once(socket, "open");
      const message = await Promise.race([
        once(socket, "message").then(([data]) => data.toString()),
        new Promise((resolve) => setTimeout(() => resolve(null), 2000)),
      ]);
      socket.terminate();
      assert.ok(message !== null, `connection ${i}: the open packet was lost`);
      assert.match(message, /^0\{"sid":/, `connection ${i}`);
    }
  });
});

describe("polling -> websocket upgrade", () => {
  it("upgrades, and no message sent around the upgrade is lost or reordered", async () => {
    const c = await open({ transports: ["polling", "websocket"] });
    assert.equal(c.socket.transport.name, "polling");
    const upgraded = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no upgrade within 5 s")), 5000);
      c.socket.once("upgrade", (transport) => {
        clearTimeout(t);
        resolve(transport.name);
      });
      c.socket.once("upgradeError", (err) => {
        clearTimeout(t);
        reject(new Error(`upgradeError: ${err && err.message}`));
      });
    });
    // Sent while the upgrade is still under way (polling, then buffered).
    const before = smallMessages(50);
    const echoedBefore = roundTrip(c, before);
    assert.equal(await upgraded, "websocket");
    await echoedBefore;
    assert.equal(c.socket.transport.name, "websocket");
    await roundTrip(c, ["after upgrade", Buffer.from([1, 2, 3]), ...smallMessages(50)]);
    c.socket.close();
  });
});

for (const { name, opts } of TRANSPORTS) {
  describe(`messages over ${name}`, () => {
    it("echoes 500 small text and binary messages in order, edge-case strings included", async () => {
      const c = await open(opts);
      await roundTrip(c, [...EDGE, ...smallMessages(500)]);
      c.socket.close();
    });

    it("echoes large messages: 1 MiB ASCII text, 1 MiB binary, ~1 MiB of multi-byte unicode", async () => {
      const c = await open(opts);
      const ascii = "x".repeat(LARGE - 7) + "-end-ok";
      const binary = crypto.randomBytes(LARGE);
      const unicode = unicodeText(LARGE);
      await roundTrip(c, [ascii, binary, unicode], 15000);
      c.socket.close();
    });
  });
}

describe("close and reconnect", () => {
  for (const { name, opts } of [TRANSPORTS[0], TRANSPORTS[1]]) {
    it(`${name}: a new session works after a client close, and the old sid is gone`, async () => {
      const first = await open(opts);
      await roundTrip(first, ["before close"]);
      const oldSid = first.socket.id;
      const closing = waitClose(first.socket);
      first.socket.close();
      assert.equal(await closing, "forced close");

      const second = await open(opts);
      assert.notEqual(second.socket.id, oldSid, "a new session must get a new sid");
      await roundTrip(second, ["after reconnect", Buffer.from("bin")]);

      // The server must have dropped the old session: a poll with its sid is refused.
      await sleep(50);
      const res = await fetch(`${ENDPOINT}?EIO=3&transport=polling&sid=${encodeURIComponent(oldSid)}`);
      assert.equal(res.status, 400, `poll with the closed session's sid answered ${res.status}`);
      await res.arrayBuffer();
      second.socket.close();
    });
  }
});

describe("heartbeat", () => {
  for (const { name, opts } of [TRANSPORTS[0], TRANSPORTS[1]]) {
    it(`${name}: ping/pong keeps an idle socket open past pingInterval + pingTimeout`, async (t) => {
      const c = await open(opts);
      const { pingInterval, pingTimeout } = c.handshake;
      const idle = 2 * (pingInterval + pingTimeout) + 300;
      if (idle > MAX_IDLE_WAIT) {
        c.socket.close();
        t.skip(`server advertises pingInterval ${pingInterval} + pingTimeout ${pingTimeout} ms; run it with 300/200`);
        return;
      }
      let pongs = 0;
      c.socket.on("pong", () => pongs++);
      await sleep(idle);
      assert.equal(c.inbox.closed, null, `socket closed while idle: ${JSON.stringify(c.inbox.closed)}`);
      assert.ok(pongs >= 2, `expected at least 2 pongs in ${idle} ms, got ${pongs}`);
      await roundTrip(c, ["still alive"]);
      c.socket.close();
    });
  }
});

// engine.io v3 binary payload encoding (a session opened without b64=1): per packet
// 0 (text) or 1 (binary), the packet's byte length as one byte per decimal digit,
// 255, then the packet (text: UTF-8 of type char + data; binary: type byte 4 + data).
function binaryPacket(kind, bytes) {
  const digits = String(bytes.length).split("").map(Number);
  return Buffer.concat([Buffer.from([kind, ...digits, 255]), bytes]);
}

describe("raw polling without b64 (binary payloads, as browsers' engine.io-client uses)", () => {
  async function handshake() {
    const res = await fetch(`${ENDPOINT}?EIO=3&transport=polling`);
    assert.equal(res.status, 200);
    const text = await res.text();
    const m = /^(\d+):0(\{.*\})$/s.exec(text);
    assert.ok(m, `handshake payload: ${text.slice(0, 120)}`);
    assert.equal(Number(m[1]), text.length - m[1].length - 1, "length prefix counts the packet's characters");
    return JSON.parse(m[2]).sid;
  }
  async function post(sid, body, contentType) {
    const res = await fetch(`${ENDPOINT}?EIO=3&transport=polling&sid=${sid}`, {
      method: "POST",
      headers: { "content-type": contentType },
      body,
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "ok");
  }
  async function poll(sid) {
    const res = await fetch(`${ENDPOINT}?EIO=3&transport=polling&sid=${sid}`);
    assert.equal(res.status, 200);
    return { type: res.headers.get("content-type") || "", body: Buffer.from(await res.arrayBuffer()) };
  }

  it("text payload with a base64 binary packet in, binary payload out", async () => {
    const sid = await handshake();
    await post(sid, "6:4hello10:b4AQIDBA==", "text/plain;charset=UTF-8");
    const { type, body } = await poll(sid);
    assert.match(type, /^application\/octet-stream/);
    const want = Buffer.concat([binaryPacket(0, Buffer.from("4hello")), binaryPacket(1, Buffer.from([4, 1, 2, 3, 4]))]);
    assert.deepEqual([...body], [...want]);
    await post(sid, "1:1", "text/plain;charset=UTF-8");
  });

  it("binary payload in (multi-digit lengths, UTF-8 text), binary payload out", async () => {
    const sid = await handshake();
    const payload = Buffer.concat([
      binaryPacket(0, Buffer.from("4héllo wörld 😀")),
      binaryPacket(1, Buffer.concat([Buffer.from([4]), crypto.randomBytes(300)])),
      binaryPacket(0, Buffer.from("4")),
    ]);
    await post(sid, payload, "application/octet-stream");
    const { type, body } = await poll(sid);
    assert.match(type, /^application\/octet-stream/);
    assert.ok(body.equals(payload), `echo differs: ${body.length} bytes back for ${payload.length}`);
    await post(sid, "1:1", "text/plain;charset=UTF-8");
  });

  it("text-only payloads stay text even without b64", async () => {
    const sid = await handshake();
    await post(sid, "6:4hello2:4é", "text/plain;charset=UTF-8");
    const { type, body } = await poll(sid);
    assert.match(type, /^text\/plain/);
    assert.equal(body.toString("utf8"), "6:4hello2:4é");
    await post(sid, "1:1", "text/plain;charset=UTF-8");
  });
});
