#!/usr/bin/env node
// Reference RFC 6455 echo server for checking scripts/conformance/autobahn.sh:
// the `ws` package from npm, echoing every text and binary message on PATH.
//
//   node tests/conformance/ws-echo-server.js [PORT] [PATH]
//
// PORT defaults to 0 (any free port), PATH to /echo. Listens on 127.0.0.1 only.
// Prints "listening ws://127.0.0.1:PORT/PATH" on stdout once ready.
// permessage-deflate is left off, like corestream's endpoint.
// WS_ECHO_BROKEN=1 turns off UTF-8 validation of text messages, a deliberate
// RFC 6455 violation (Autobahn 6.x must then report FAILED): it shows that the
// harness catches a non-conforming server.
"use strict";

const http = require("http");
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] || 0);
const path = process.argv[3] || "/echo";

const server = http.createServer((req, res) => {
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("not found\n");
});

// maxPayload 64 MiB: Autobahn 9.x sends messages of up to 16 MiB.
const wss = new WebSocketServer({
  server,
  path,
  perMessageDeflate: false,
  maxPayload: 64 * 1024 * 1024,
  skipUTF8Validation: process.env.WS_ECHO_BROKEN === "1",
});

wss.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => {
    socket.send(data, { binary: isBinary });
  });
  socket.on("error", () => {});
});

server.listen(port, "127.0.0.1", () => {
  console.log(`listening ws://127.0.0.1:${server.address().port}${path}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    for (const c of wss.clients) c.terminate();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
