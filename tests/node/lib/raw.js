'use strict';
/*
 * A raw TCP client for the deepstream 1.x text protocol (the node client's transport); the
 * protocol side (messages, waiting, handshake, login) is tests/node/lib/wire.js.
 *
 *   const raw = require('../lib/raw');
 *   const c = await raw.connect('127.0.0.1:6021', { auth: { username: 'x' } });
 *   c.send('E', 'L', 'pattern/.*');
 *   const m = await c.waitFor((m) => m[0] === 'E' && m[1] === 'SP');
 *   await c.close();
 */
const net = require('net');
const { parseHostPort } = require('./util');
const wire = require('./wire');

class RawClient extends wire.RawConnection {
  constructor(url, opts) {
    // an empty message (two 0x1E in a row) is kept as [''], as the 1.x captures show it
    super(url, { label: (opts && opts.label) || 'raw', keepEmpty: true });
    const { host, port } = parseHostPort(url);
    this.socket = net.createConnection({ host, port });
    this.socket.setEncoding('utf8');
    this.socket.setNoDelay(true);
    this.connected = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk) => this._receive(chunk));
    this.socket.on('error', (err) => {
      this.error = err;
    });
    this.socket.on('close', () => this._closed());
  }

  /** send exact wire text (already containing 0x1F / 0x1E) */
  sendWire(text) {
    this.socket.write(text);
  }

  _onceClosed(fn) {
    this.socket.once('close', fn);
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
function connect(url, opts = {}) {
  const c = new RawClient(url, opts);
  return wire.connectAndLogin(c, opts, () => c.socket.destroy());
}

module.exports = { connect, RawClient, parseHostPort, encode: wire.encode, fromText: wire.fromText, toText: wire.toText, US: wire.US, RS: wire.RS };
