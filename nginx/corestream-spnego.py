#!/usr/bin/python3
"""corestream-spnego: the Kerberos (SPNEGO / HTTP Negotiate) check behind nginx's auth_request.

nginx has no SPNEGO module on Debian 12. This small HTTP service takes its place: nginx asks it
about every request to /deepstream (`auth_request`, variant D of nginx/corestream-http.conf,
what `corestream nginx --auth kerberos` prints); the Kerberos part is done by MIT Kerberos
through python3-gssapi (Debian package python3-gssapi), nothing here parses a ticket.

Answers:
  204 with `X-Auth-User: <user>`   the request's `Authorization: Negotiate <token>` is a valid
                                   AP-REQ for a principal of the keytab; nginx forwards the user
                                   to corestream as X-Forwarded-User (auth type proxy-header)
  401 with `WWW-Authenticate: Negotiate`
                                   no token, or one that is not valid (wrong service, expired
                                   ticket, replay, garbage); nginx passes the 401 and this header
                                   to the client, so browsers start negotiating

The user is the client's principal (`alice@EXAMPLE.COM`), or with --user short its name without
the realm (`alice`); with --realm, principals of other realms are refused.

Token reuse (--token-cache): an engine.io client sends the same Authorization header with every
poll of its session (a browser negotiates again per connection; engine.io-client in Node and
the 2.x client's header options repeat one token). MIT Kerberos refuses a token it has seen
(replay cache), so a token accepted once is remembered, by its SHA-256, until its ticket
expires, and answered from memory: the same token keeps working exactly as long as the ticket
it was made from. That is a replay window for whoever can read the header, which TLS closes
(the shipped nginx config has TLS on). --token-cache 0 turns this off: every token is then good
for one request only.

Run it as a user that can read the service keytab (`HTTP/<host>@REALM`):
  KRB5_KTNAME=/etc/corestream/http.keytab corestream-spnego.py --listen 127.0.0.1:8089 --user short
Logs one line per decision on standard error.
"""

import argparse
import base64
import hashlib
import http.server
import os
import sys
import threading
import time

import gssapi


class TokenCache:
    """Tokens accepted before: SHA-256 -> (user, expiry in monotonic seconds); bounded."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.entries = {}
        self.lock = threading.Lock()

    def get(self, digest):
        with self.lock:
            entry = self.entries.get(digest)
            if entry is None:
                return None
            if entry[1] <= time.monotonic():
                del self.entries[digest]
                return None
            return entry[0]

    def put(self, digest, user, lifetime):
        if self.capacity <= 0 or lifetime is None or lifetime <= 0:
            return
        now = time.monotonic()
        with self.lock:
            if len(self.entries) >= self.capacity:
                self.entries = {d: e for d, e in self.entries.items() if e[1] > now}
            if len(self.entries) >= self.capacity:
                # still full: drop the entry that expires first
                del self.entries[min(self.entries, key=lambda d: self.entries[d][1])]
            self.entries[digest] = (user, now + lifetime)


class Validator:
    """Accepts Negotiate tokens with the keytab's credentials."""

    def __init__(self, options):
        self.user_format = options.user
        self.realm = options.realm
        self.cache = TokenCache(options.token_cache)
        store = {"keytab": options.keytab} if options.keytab else None
        self.credentials = gssapi.Credentials(usage="accept", store=store)

    def user_of(self, principal):
        """-> (the user to forward, or None, the reason)."""
        name, at, realm = principal.rpartition("@")
        if not at:
            name, realm = principal, ""
        if self.realm is not None and realm != self.realm:
            return None, f"realm {realm!r} is not {self.realm!r}"
        if any(ord(c) < 0x20 or c == "\x7f" for c in principal):
            return None, "control characters in the principal"
        return (name if self.user_format == "short" else principal), "accepted"

    def check(self, authorization):
        """-> (user or None, reason) for an Authorization header value."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "negotiate" or not token.strip():
            return None, "no Negotiate token"
        token = token.strip()
        digest = hashlib.sha256(token.encode("ascii", "replace")).digest()
        cached = self.cache.get(digest)
        if cached is not None:
            return cached, "accepted (token seen before, ticket still valid)"
        try:
            raw = base64.b64decode(token, validate=True)
        except ValueError:
            return None, "the token is not base64"
        # (python-gssapi keeps an error of step() and raises it at the next use of the context)
        context = gssapi.SecurityContext(creds=self.credentials, usage="accept")
        try:
            context.step(raw)
            if not context.complete:
                return None, "the token needs another round (only one-round Kerberos is accepted)"
            principal, lifetime = str(context.initiator_name), context.lifetime
        except gssapi.exceptions.GSSError as error:
            return None, " ".join(str(error).split())
        user, reason = self.user_of(principal)
        if user is not None:
            self.cache.put(digest, user, lifetime)
        return user, reason


def handler_for(validator):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "corestream-spnego"

        def answer(self):
            user, reason = validator.check(self.headers.get("Authorization"))
            uri = self.headers.get("X-Original-URI", self.path)
            peer = self.headers.get("X-Original-Remote-Addr", self.client_address[0])
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            who = user if user is not None else "-"
            print(f"{when} {peer} {uri!r} {who}: {reason}", file=sys.stderr, flush=True)
            if user is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", "Negotiate")
            else:
                self.send_response(204)
                self.send_header("X-Auth-User", user)
            self.send_header("Content-Length", "0")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()

        do_GET = answer
        do_HEAD = answer
        do_POST = answer

        def log_message(self, format, *args):
            pass  # one line per decision is logged in answer()

    return Handler


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="The Kerberos (SPNEGO) check behind nginx auth_request for corestream.",
        epilog="The keytab comes from --keytab or KRB5_KTNAME; krb5.conf from KRB5_CONFIG.",
    )
    parser.add_argument("--listen", default="127.0.0.1:8089", metavar="HOST:PORT",
                        help="where nginx asks (default 127.0.0.1:8089; keep it on loopback)")
    parser.add_argument("--keytab", metavar="FILE",
                        help="the service keytab (HTTP/<host>@REALM); default: KRB5_KTNAME")
    parser.add_argument("--user", choices=["principal", "short"], default="principal",
                        help="forward alice@REALM (principal, default) or alice (short)")
    parser.add_argument("--realm", metavar="REALM",
                        help="refuse principals of any other realm (advised with --user short)")
    parser.add_argument("--token-cache", type=int, default=10000, metavar="N",
                        help="tokens remembered until their ticket expires (default 10000; "
                             "0: a token is good for one request)")
    return parser.parse_args(argv)


def main(argv):
    options = parse_arguments(argv)
    host, _, port = options.listen.rpartition(":")
    try:
        validator = Validator(options)
    except gssapi.exceptions.GSSError as error:
        keytab = options.keytab or os.environ.get("KRB5_KTNAME", "the default keytab")
        print(f"corestream-spnego: cannot use {keytab}: {' '.join(str(error).split())}",
              file=sys.stderr)
        return 2
    server = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)),
                                             handler_for(validator))
    server.daemon_threads = True
    print(f"corestream-spnego: listening on {options.listen}, users as {options.user}",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
