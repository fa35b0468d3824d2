#!/usr/bin/env node
// Reference engine.io protocol 3 (EIO=3) echo server, the real engine.io@3 from npm:
// every message packet a client sends (text or binary) is sent straight back.
// Used to check scripts/conformance/engineio-suite.sh and eio3-client.sh.
//
//   node tests/conformance/eio3-echo-server.js [PORT] [PATH]
//
// PORT defaults to 0 (any free port), PATH to /engine.io. Listens on 127.0.0.1
// (EIO_HOST overrides). pingInterval 300 ms and pingTimeout 200 ms by default, what
// the engine.io protocol test suite expects (EIO_PING_INTERVAL / EIO_PING_TIMEOUT
// override them). Prints "listening http://HOST:PORT PATH" on stdout once ready.
"use strict";

const http = require("http");
const engine = require("engine.io");

const port = Number(process.argv[2] || 0);
const path = process.argv[3] || "/engine.io";
const host = process.env.EIO_HOST || "127.0.0.1";

const httpServer = http.createServer((req, res) => {
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("not found\n");
});

const server = engine.attach(httpServer, {
  path,
  pingInterval: Number(process.env.EIO_PING_INTERVAL || 300),
  pingTimeout: Number(process.env.EIO_PING_TIMEOUT || 200),
  // engine.io 3.6 defaults to 1e6 bytes per HTTP body / WebSocket message; the
  // client tests send 1 MiB messages, so allow more.
  maxHttpBufferSize: 1e8,
  perMessageDeflate: false,
  httpCompression: false,
});

server.on("connection", (socket) => {
  socket.on("message", (data) => socket.send(data));
  socket.on("error", () => {});
});

httpServer.listen(port, host, () => {
  console.log(`listening http://${host}:${httpServer.address().port} ${path}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    server.close();
    httpServer.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
