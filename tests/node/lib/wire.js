'use strict';
/*
 * The deepstream text protocol on the client side, for raw clients of any transport
 * (tests/node/lib/raw.js: TCP, 1.x; tests/node/lib/raw-ws.js: WebSocket, 2.x).
 *
 * Messages are arrays of fields. On the wire the fields are separated by 0x1F and every
 * message ends with 0x1E. `toText()` / `fromText()` convert to and from the notation of the
 * captures (`|` = 0x1F, `+` = 0x1E).
 *
 * RawConnection is what a raw client does whatever carries its bytes: it reassembles incoming
 * text on 0x1E boundaries (one `received` entry is one message however the server splits or
 * batches its writes), lets a test wait for messages, and does the handshake and login. A
 * transport subclass calls `_receive(text)` with what arrived and `_closed()` when the socket
 * is gone, and implements `sendWire(wire)`, `close()` and `_onceClosed(fn)`.
 */
const { withTimeout } = require('./util');

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

/** one unit of messages (e.g. a WebSocket frame) -> array of field arrays, empty pieces dropped */
function splitUnit(unit) {
  const out = [];
  for (const m of String(unit).split(RS)) {
    if (m.length > 0) out.push(m.split(US));
  }
  return out;
}

/** the typed encoding (S, N, T, F, L, U, O) of event data, RPC data and path values */
function decodeTyped(v) {
  switch (v[0]) {
    case 'S':
      return v.slice(1);
    case 'N':
      return parseFloat(v.slice(1));
    case 'T':
      return true;
    case 'F':
      return false;
    case 'L':
      return null;
    case 'U':
      return undefined;
    case 'O':
      return JSON.parse(v.slice(1));
    default:
      throw new Error(`unknown typed value ${JSON.stringify(v)}`);
  }
}

/** closes every raw client of a list (nulls allowed) */
function closeRaws(list) {
  return Promise.all(list.filter(Boolean).map((c) => c.close()));
}

class RawConnection {
  /**
   * opts: { label, keepEmpty: keep the empty message between two 0x1E as [''] (TCP, as the
   * 1.x captures show it), ignore: (fields) => true for messages texts() leaves out (pings) }
   */
  constructor(url, opts) {
    this.url = url;
    this.label = opts.label;
    this.received = []; // array of field arrays, in arrival order
    this.receivedAt = []; // Date.now() per received message
    this.closed = false;
    this.error = null;
    this._keepEmpty = !!opts.keepEmpty;
    this._ignore = opts.ignore || (() => false);
    this._buffer = '';
    this._waiters = [];
  }

  /** text arrived: complete messages go to `received`; returns them */
  _receive(text) {
    this._buffer += text;
    const parts = this._buffer.split(RS);
    this._buffer = parts.pop(); // incomplete tail (or '' after a final 0x1E)
    const now = Date.now();
    const messages = [];
    for (const p of parts) {
      if (p.length === 0 && !this._keepEmpty) continue; // e.g. the second 0x1E of `X|E|MESSAGE_PARSE_ERROR|<raw unit>+`
      const m = p.split(US);
      this.received.push(m);
      this.receivedAt.push(now);
      messages.push(m);
    }
    this._check();
    return messages;
  }

  /** the socket is gone */
  _closed() {
    this.closed = true;
    this._check();
  }

  _check() {
    for (const w of this._waiters.slice()) w();
  }

  /** send one message given as fields: send('E', 'S', 'name') */
  send(...fields) {
    this.sendWire(encode(fields));
  }

  /** send capture notation: sendText('E|S|name+') */
  sendText(text) {
    this.sendWire(fromText(text));
  }

  /** received messages (index >= from) in capture notation, e.g. ['C|CH', 'C|A', ...], without the ignored ones */
  texts(from = 0) {
    return this.received
      .slice(from)
      .filter((m) => !this._ignore(m))
      .map((m) => m.join('|'));
  }

  /** received messages in capture notation, every one */
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
          reject(new Error(`${this.label}: socket closed${this._closeDetail()} while waiting for ${what}; received: ${JSON.stringify(this.allTexts())}`));
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

  /** more about a close, for error messages (a WebSocket's close code) */
  _closeDetail() {
    return '';
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
      this._onceClosed(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** the URL the client names in `C|CHR` */
  challengeUrl() {
    return this.url;
  }

  /** C|CH -> C|CHR|url -> C|A only (no login) */
  async handshake(timeoutMs = 3000) {
    await this.connected;
    await this.waitForMessage(['C', 'CH'], timeoutMs);
    const start = this.received.length;
    this.send('C', 'CHR', this.challengeUrl());
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
}

/**
 * Waits for a new raw client to connect; with opts.auth set, also does the handshake and
 * login. Calls destroy() on failure. opts: { auth, timeoutMs }
 */
async function connectAndLogin(c, opts, destroy) {
  const timeoutMs = opts.timeoutMs || 3000;
  try {
    await withTimeout(c.connected, timeoutMs, `${c.label}: connect to ${c.url}`);
    if (opts.auth !== undefined) await c.login(opts.auth, timeoutMs);
  } catch (err) {
    destroy();
    throw err;
  }
  return c;
}

module.exports = { US, RS, encode, fromText, toText, splitUnit, decodeTyped, closeRaws, RawConnection, connectAndLogin };
