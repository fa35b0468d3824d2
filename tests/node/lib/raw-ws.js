'use strict';
/*
 * A raw websocket client for the deepstream 2.x text protocol (ws://host:port/deepstream),
 * built on the `ws` package that deepstream.io-client-js 2.3.4 itself uses.
 *
 * Messages are arrays of fields. On the wire the fields are separated by 0x1F and every
 * message ends with 0x1E; a text frame can carry several messages. `received` holds one
 * entry per message, `frames` one entry per text frame ({text, at}).
 *
 *   const rawws = require('../lib/raw-ws');
 *   const c = await rawws.connect('127.0.0.1:6020', { auth: { username: 'x' } });
 *   c.send('E', 'L', 'pattern/.*');
 *   const m = await c.waitFor((m) => m[0] === 'E' && m[1] === 'SP');
 *   await c.close();
 *
 * Heartbeat: the 2.x server sends `C|PI` every heartbeatInterval and drops a socket that sent
 * nothing since the previous ping. By default this client answers every `C|PI` with `C|PO`
 * (like the real client); pass { autoPong: false } to stay silent.
 *
 * `text()` / `parse()` helpers convert to and from the notation of the captures
 * (`|` = 0x1F, `+` = 0x1E).
 */
const path = require('path');

// the `ws` the 2.x client library depends on (ws@5)
let WebSocket;
try {
  const clientDir = path.dirname(require.resolve('deepstream.io-client-js-2/package.json'));
  WebSocket = require(require.resolve('ws', { paths: [clientDir] }));
} catch (e) {
  WebSocket = require('ws');
}

const US = '\x1f';
const RS = '\x1e';

/** fields -> one wire message (with its terminator) */
function encode(fields) {
  return fields.map(String).join(US) + RS;
}

/** capture notation -> wire text: 'E|S|x+' -> 'E\x1fS\x1fx\x1e' */
function fromText(text) {
  return text.replace(/\|/g, US).replace(/\+/g, RS);
}

/** wire -> capture notation */
function toText(wire) {
  return wire.replace(/\x1f/g, '|').replace(/\x1e/g, '+');
}

/** 'host:port' (or a ws:// URL) -> 'ws://host:port/deepstream' */
function wsUrl(url) {
  let s = String(url);
  if (!/^wss?:\/\//i.test(s)) s = 'ws://' + s;
  if (!/^wss?:\/\/[^/]+\/./i.test(s)) s = s.replace(/\/?$/, '/deepstream');
  return s;
}

class RawWsClient {
  constructor(url, opts) {
    opts = opts || {};
    this.url = wsUrl(url);
    this.label = opts.label || 'raw-ws';
    this.autoPong = opts.autoPong !== false;
    this.received = []; // array of field arrays, in arrival order
    this.receivedAt = []; // Date.now() per received message
    this.frames = []; // {text, at} per received text frame
    this.sentAt = []; // Date.now() per frame sent by us (including automatic C|PO)
    this.closed = false;
    this.closeCode = null;
    this.closeReason = null;
    this.closedAt = null;
    this.error = null;
    this._buffer = '';
    this._waiters = [];
    this.ws = new WebSocket(this.url, { perMessageDeflate: false });
    this.connected = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
      this.ws.once('close', () => reject(new Error(`${this.label}: closed before open`)));
    });
    this.connected.catch(() => {}); // handled by connect()
    this.ws.on('message', (data) => this._onFrame(String(data)));
    this.ws.on('error', (err) => {
      this.error = err;
    });
    this.ws.on('close', (code, reason) => {
      this.closed = true;
      this.closeCode = code;
      this.closeReason = String(reason || '');
      this.closedAt = Date.now();
      this._check();
    });
  }

  _onFrame(text) {
    const now = Date.now();
    this.frames.push({ text, at: now });
    this._buffer += text;
    const parts = this._buffer.split(RS);
    this._buffer = parts.pop(); // incomplete tail (or '' after a final 0x1E)
    for (const p of parts) {
      if (p.length === 0) continue; // e.g. the second 0x1E of `X|E|MESSAGE_PARSE_ERROR|<raw unit>+`
      const m = p.split(US);
      this.received.push(m);
      this.receivedAt.push(now);
      if (this.autoPong && m.length === 2 && m[0] === 'C' && m[1] === 'PI') this.send('C', 'PO');
    }
    this._check();
  }

  _check() {
    for (const w of this._waiters.slice()) w();
  }

  /** send one message given as fields: send('E', 'S', 'name') */
  send(...fields) {
    this.sendWire(encode(fields));
  }

  /** send exact wire text (already containing 0x1F / 0x1E) as one text frame */
  sendWire(wire) {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.sentAt.push(Date.now());
    this.ws.send(wire);
  }

  /** send capture notation: sendText('E|S|name+') */
  sendText(text) {
    this.sendWire(fromText(text));
  }

  /**
   * received messages (index >= from) in capture notation, e.g. ['C|CH', 'C|A', ...], without
   * the heartbeat pings (`C|PI` can arrive between any two messages)
   */
  texts(from = 0) {
    return this.allTexts(from).filter((t) => t !== 'C|PI');
  }

  /** received messages in capture notation, pings included */
  allTexts(from = 0) {
    return this.received.slice(from).map((m) => m.join('|'));
  }

  /**
   * Resolves with the first received message (index >= from) matching pred.
   * Rejects after timeoutMs, or when the socket closes without a match.
   */
  waitFor(pred, timeoutMs = 3000, from = 0, what = 'a matching message') {
    return new Promise((resolve, reject) => {
      let timer = null;
      const check = () => {
        for (let i = from; i < this.received.length; i++) {
          if (pred(this.received[i], i)) {
            done();
            resolve(this.received[i]);
            return;
          }
        }
        if (this.closed) {
          done();
          reject(new Error(`${this.label}: socket closed (code ${this.closeCode}) while waiting for ${what}; received: ${JSON.stringify(this.allTexts())}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        const i = this._waiters.indexOf(check);
        if (i >= 0) this._waiters.splice(i, 1);
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: timed out after ${timeoutMs} ms waiting for ${what}; received: ${JSON.stringify(this.allTexts())}`));
      }, timeoutMs);
      this._waiters.push(check);
      check();
    });
  }

  /** wait for an exact message, given as fields or in capture notation ('E|A|S|x') */
  waitForMessage(expected, timeoutMs = 3000, from = 0) {
    const fields = Array.isArray(expected) ? expected.map(String) : String(expected).replace(/\+$/, '').split('|');
    const key = fields.join(US);
    return this.waitFor((m) => m.join(US) === key, timeoutMs, from, JSON.stringify(fields.join('|')));
  }

  /** resolves when the socket is closed (by the server or us); rejects after timeoutMs */
  waitClosed(timeoutMs = 3000) {
    return new Promise((resolve, reject) => {
      if (this.closed) return resolve();
      const timer = setTimeout(() => reject(new Error(`${this.label}: socket not closed after ${timeoutMs} ms; received: ${JSON.stringify(this.allTexts())}`)), timeoutMs);
      this.ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** C|CH -> C|CHR|url -> C|A only (no login) */
  async handshake(timeoutMs = 3000) {
    await this.connected;
    await this.waitForMessage(['C', 'CH'], timeoutMs);
    const start = this.received.length;
    this.send('C', 'CHR', this.url);
    await this.waitForMessage(['C', 'A'], timeoutMs, start);
  }

  /**
   * handshake, then A|REQ|json -> A|A (resolves with the A|A message) or A|E (rejects with an
   * error whose .reply is the reply)
   */
  async login(authData = {}, timeoutMs = 3000) {
    await this.handshake(timeoutMs);
    const from = this.received.length;
    this.send('A', 'REQ', JSON.stringify(authData));
    const reply = await this.waitFor((m) => m[0] === 'A', timeoutMs, from, 'an auth reply');
    if (reply[1] !== 'A') {
      const err = new Error(`${this.label}: login failed: ${reply.join('|')}`);
      err.reply = reply;
      throw err;
    }
    return reply;
  }

  /** close our side (close handshake) and wait (bounded) for the socket to be fully closed */
  close(timeoutMs = 1000) {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      const timer = setTimeout(() => {
        try {
          this.ws.terminate();
        } catch (e) {
          /* ignore */
        }
        resolve();
      }, timeoutMs);
      this.ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      try {
        this.ws.close();
      } catch (e) {
        this.ws.terminate();
      }
    });
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Connects; with opts.auth set, also does the handshake and login.
 * opts: { auth: {...} | undefined, label: string, timeoutMs: number, autoPong: boolean }
 */
async function connect(url, opts = {}) {
  const c = new RawWsClient(url, opts);
  try {
    await withTimeout(c.connected, opts.timeoutMs || 3000, `${c.label}: connect to ${c.url}`);
    if (opts.auth !== undefined) await c.login(opts.auth, opts.timeoutMs || 3000);
  } catch (err) {
    try {
      c.ws.terminate();
    } catch (e) {
      /* ignore */
    }
    throw err;
  }
  return c;
}

module.exports = { connect, RawWsClient, WebSocket, encode, fromText, toText, wsUrl, US, RS };
