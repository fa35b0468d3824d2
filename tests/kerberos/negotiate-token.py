#!/usr/bin/python3
"""Prints HTTP Negotiate (SPNEGO) tokens for a service, made from the ticket cache in KRB5CCNAME,
for the Kerberos tests and benchmark (tests/node/kerberos): the Node clients send one as
`Authorization: Negotiate <token>`. Each token is a new AP-REQ (a fresh authenticator), as a
browser makes one per connection.

  negotiate-token.py [SERVICE [COUNT]]   SERVICE: a host-based service name (HTTP@localhost);
                                         COUNT tokens, one per line (default 1)
"""
import base64
import sys

import gssapi

service = sys.argv[1] if len(sys.argv) > 1 else "HTTP@localhost"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
try:
    name = gssapi.Name(service, gssapi.NameType.hostbased_service)
    spnego = gssapi.Mechanism.from_sasl_name("SPNEGO")
    for _ in range(count):
        context = gssapi.SecurityContext(name=name, usage="initiate", mech=spnego)
        print(base64.b64encode(context.step()).decode("ascii"))
except gssapi.exceptions.GSSError as error:
    print(f"negotiate-token: {' '.join(str(error).split())}", file=sys.stderr)
    sys.exit(1)
