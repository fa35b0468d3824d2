'use strict';
/*
 * The raw WebSocket client of the tests (ws://host:port/deepstream, the 2.x protocol), built on
 * the `ws` package that deepstream.io-client-js 2.3.4 itself uses; the protocol side
 * (messages, waiting, handshake, login) is tests/node/lib/wire.js. The only WebSocket client
 * helper of tests/node: the nginx tests open it with extra `ws` options (headers, a local
 * address), the cluster and soak tests use it as it is.
 *
 * A text frame can carry several messages: `received` holds one entry per message, `frames`
 * one entry per text frame ({text, at}).
 *
 *   const rawws = require('../lib/raw-ws');
 *   const c = await rawws.connect('127.0.0.1:6020', { auth: { username: 'x' } });
 *   c.send('E', 'L', 'pattern/.*');
 *   const m = await c.waitFor((m) => m[0] === 'E' && m[1] === 'SP');
 *   await c.close();
 *
 * Heartbeat: the 2.x server sends `C|PI` every heartbeatInterval and drops a socket that sent
 * nothing since the previous ping. By default this client answers every `C|PI` with `C|PO`
 * (like the real client); pass { autoPong: false } to stay silent. texts() leaves the pings out.
 */
const path = require('path');
const wire = require('./wire');

// the `ws` the 2.x client library depends on (ws@5)
let WebSocket;
try {
  const clientDir = path.dirname(require.resolve('deepstream.io-client-js-2/package.json'));
  WebSocket = require(require.resolve('ws', { paths: [clientDir] }));
} catch (e) {
  WebSocket = require('ws');
}

const isPing = (m) => m.length === 2 && m[0] === 'C' && m[1] === 'PI';

/** 'host:port' (or a ws:// URL) -> 'ws://host:port/deepstream' */
function wsUrl(url) {
  let s = String(url);
  if (!/^wss?:\/\//i.test(s)) s = 'ws://' + s;
  if (!/^wss?:\/\/[^/]+\/./i.test(s)) s = s.replace(/\/?$/, '/deepstream');
  return s;
}

class RawWsClient extends wire.RawConnection {
  /** opts: { label, autoPong }; wsOptions: more options for the `ws` socket (headers, localAddress, ...) */
  constructor(url, opts, wsOptions) {
    opts = opts || {};
    super(wsUrl(url), { label: opts.label || 'raw-ws', ignore: (m) => m.join('|') === 'C|PI' });
    this.autoPong = opts.autoPong !== false;
    this.frames = []; // {text, at} per received text frame
    this.sentAt = []; // Date.now() per frame sent by us (including automatic C|PO)
    this.closeCode = null;
    this.closeReason = null;
    this.closedAt = null;
    this.ws = new WebSocket(this.url, Object.assign({ perMessageDeflate: false }, wsOptions || {}));
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
      this.closeCode = code;
      this.closeReason = String(reason || '');
      this.closedAt = Date.now();
      this._closed();
    });
  }

  _onFrame(text) {
    this.frames.push({ text, at: Date.now() });
    const messages = this._receive(text);
    if (this.autoPong) for (const m of messages) if (isPing(m)) this.send('C', 'PO');
  }

  _closeDetail() {
    return ` (code ${this.closeCode})`;
  }

  /** send exact wire text (already containing 0x1F / 0x1E) as one text frame */
  sendWire(text) {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.sentAt.push(Date.now());
    this.ws.send(text);
  }

  _onceClosed(fn) {
    this.ws.once('close', fn);
  }

  _terminate() {
    try {
      this.ws.terminate();
    } catch (e) {
      /* ignore */
    }
  }

  /** close our side (close handshake) and wait (bounded) for the socket to be fully closed */
  close(timeoutMs = 1000) {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      const timer = setTimeout(() => {
        this._terminate();
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

/**
 * Connects; with opts.auth set, also does the handshake and login.
 * opts: { auth: {...} | undefined, label: string, timeoutMs: number, autoPong: boolean };
 * wsOptions: see RawWsClient
 */
function connect(url, opts = {}, wsOptions) {
  const c = new RawWsClient(url, opts, wsOptions);
  return wire.connectAndLogin(c, opts, () => c._terminate());
}

module.exports = { connect, RawWsClient, WebSocket, wsUrl, encode: wire.encode, fromText: wire.fromText, toText: wire.toText, US: wire.US, RS: wire.RS };
