'use strict';
/*
 * A raw TCP client for the deepstream 1.x text protocol (the node client's transport).
 *
 * Messages are arrays of fields. On the wire the fields are separated by 0x1F and every
 * message ends with 0x1E. Incoming data is reassembled on 0x1E boundaries, so one
 * `received` entry is one message however the server splits or batches its writes.
 *
 *   const raw = require('../lib/raw');
 *   const c = await raw.connect('127.0.0.1:6021', { auth: { username: 'x' } });
 *   c.send('E', 'L', 'pattern/.*');
 *   const m = await c.waitFor((m) => m[0] === 'E' && m[1] === 'SP');
 *   await c.close();
 *
 * `text()` / `parse()` convert to and from the notation of the captures
 * (`|` = 0x1F, `+` = 0x1E).
 */
const net = require('net');

const US = '\x1f';
const RS = '\x1e';

/** fields -> one wire message (with its terminator) */
function encode(fields) {
  return fields.map(String).join(US) + RS;
}

/** capture notation -> wire bytes: 'E|S|x+' -> 'E\x1fS\x1fx\x1e' */
function fromText(text) {
  return text.replace(/\|/g, US).replace(/\+/g, RS);
}

/** wire -> capture notation */
function toText(wire) {
  return wire.replace(/\x1f/g, '|').replace(/\x1e/g, '+');
}

function parseHostPort(url) {
  const s = String(url).replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
  const i = s.lastIndexOf(':');
  if (i < 0) throw new Error('expected host:port, got ' + url);
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

class RawClient {
  constructor(url, opts) {
    this.url = url;
    this.label = (opts && opts.label) || 'raw';
    this.received = []; // array of field arrays, in arrival order
    this.receivedAt = []; // Date.now() per received message
    this.chunks = []; // raw chunks as received (strings)
    this.closed = false;
    this.error = null;
    this._buffer = '';
    this._waiters = [];
    const { host, port } = parseHostPort(url);
    this.socket = net.createConnection({ host, port });
    this.socket.setEncoding('utf8');
    this.socket.setNoDelay(true);
    this.connected = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk) => this._onData(chunk));
    this.socket.on('error', (err) => {
      this.error = err;
    });
    this.socket.on('close', () => {
      this.closed = true;
      this._check();
    });
  }

  _onData(chunk) {
    this.chunks.push(chunk);
    this._buffer += chunk;
    const parts = this._buffer.split(RS);
    this._buffer = parts.pop(); // incomplete tail (or '' after a final 0x1E)
    const now = Date.now();
    for (const p of parts) {
      this.received.push(p.split(US));
      this.receivedAt.push(now);
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

  /** send exact wire text (already containing 0x1F / 0x1E) */
  sendWire(wire) {
    this.socket.write(wire);
  }

  /** send capture notation: sendText('E|S|name+') */
  sendText(text) {
    this.sendWire(fromText(text));
  }

  /** received messages in capture notation, e.g. ['C|CH', 'C|A', ...] */
  texts() {
    return this.received.map((m) => m.join('|'));
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
          reject(new Error(`${this.label}: socket closed while waiting for ${what}; received: ${JSON.stringify(this.texts())}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        const i = this._waiters.indexOf(check);
        if (i >= 0) this._waiters.splice(i, 1);
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: timed out after ${timeoutMs} ms waiting for ${what}; received: ${JSON.stringify(this.texts())}`));
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

  /** resolves when the server closed the socket (or rejects after timeoutMs) */
  waitClosed(timeoutMs = 3000) {
    return new Promise((resolve, reject) => {
      if (this.closed) return resolve();
      const timer = setTimeout(() => reject(new Error(`${this.label}: socket not closed after ${timeoutMs} ms`)), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * C|CH -> C|CHR|url -> C|A -> A|REQ|json -> A|A (resolves with the A|A message) or
   * A|E (rejects with an error whose .message carries the reply).
   */
  async login(authData = {}, timeoutMs = 3000) {
    await this.connected;
    await this.waitForMessage(['C', 'CH'], timeoutMs);
    const start = this.received.length;
    this.send('C', 'CHR', this.url);
    await this.waitForMessage(['C', 'A'], timeoutMs, start);
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

  /** close our side and wait (bounded) for the socket to be fully closed */
  close(timeoutMs = 1000) {
    return new Promise((resolve) => {
      if (this.closed || this.socket.destroyed) {
        this.closed = true;
        return resolve();
      }
      const timer = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.end();
    });
  }
}

/**
 * Connects; with opts.auth set, also does the handshake and login.
 * opts: { auth: {...} | undefined, label: string, timeoutMs: number }
 */
async function connect(url, opts = {}) {
  const c = new RawClient(url, opts);
  try {
    await withTimeout(c.connected, opts.timeoutMs || 3000, `${c.label}: connect to ${url}`);
    if (opts.auth !== undefined) await c.login(opts.auth, opts.timeoutMs || 3000);
  } catch (err) {
    c.socket.destroy();
    throw err;
  }
  return c;
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

module.exports = { connect, RawClient, encode, fromText, toText, parseHostPort, US, RS };
