#!/usr/bin/env bash
# Makes a throwaway Kerberos realm in one folder, for the Kerberos tests and the auth benchmark
# (scripts/kerberos-tests.sh): MIT Kerberos from Debian's packages (krb5-kdc, krb5-admin-server,
# krb5-user), nothing written outside DIR, nothing started.
#
#   scripts/kdc.sh --dir DIR --port P [--realm REALM] [--user NAME:PASSWORD]...
#                  [--service PRINCIPAL]... [--decoy PRINCIPAL]... [--keytab-user NAME]...
#
#   --dir DIR          the realm's folder (created): krb5.conf (clients and the validator),
#                      kdc.conf, the database, services.keytab, kdc.log
#   --port P           the KDC's port on 127.0.0.1 (UDP and TCP)
#   --realm REALM      default CORESTREAM.TEST
#   --user N:P         a user principal N with password P (kinit reads it from stdin)
#   --service P        a service principal (e.g. HTTP/localhost) with a random key, written to
#                      DIR/services.keytab (what the SPNEGO validator accepts with)
#   --decoy P          a service principal with a random key in no keytab handed out: a ticket
#                      for it is a real ticket the validator cannot accept
#   --keytab-user N    a principal N with a random key in DIR/N.keytab: a backend that logs in
#                      with `kinit -k -t DIR/N.keytab N`, no password
#
# Then, with KRB5_CONFIG=DIR/krb5.conf and KRB5_KDC_PROFILE=DIR/kdc.conf in the environment:
#   krb5kdc -n -P DIR/kdc.pid          # the KDC, in the foreground (stop it by PID)
#   kinit NAME <<<PASSWORD             # a ticket (KRB5CCNAME picks the cache file)
# DIR/krb5.conf sets clockskew = 1 s (the default 300 s would keep an expired ticket valid for
# five more minutes), no DNS lookups and no hostname canonicalisation (the service is named as
# the URL names it).
set -euo pipefail

die() {
  echo "kdc.sh: $*" >&2
  exit 2
}

DIR= PORT= REALM=CORESTREAM.TEST
USERS=() SERVICES=() DECOYS=() KEYTAB_USERS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=${2:?}; shift 2 ;;
    --port) PORT=${2:?}; shift 2 ;;
    --realm) REALM=${2:?}; shift 2 ;;
    --user) USERS+=("${2:?}"); shift 2 ;;
    --service) SERVICES+=("${2:?}"); shift 2 ;;
    --decoy) DECOYS+=("${2:?}"); shift 2 ;;
    --keytab-user) KEYTAB_USERS+=("${2:?}"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -n "$DIR" ] && [ -n "$PORT" ] || die "--dir and --port are required"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "--port is a number"
[[ "$REALM" =~ ^[A-Z0-9.-]+$ ]] || die "a realm is upper-case letters, digits, . and -"
for tool in kdb5_util kadmin.local krb5kdc kinit; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
    die "$tool is missing (apt-get install krb5-kdc krb5-admin-server krb5-user)"
done
export PATH="$PATH:/usr/sbin"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
[ ! -e "$DIR/principal" ] || die "$DIR already holds a realm"

cat >"$DIR/krb5.conf" <<EOF
[libdefaults]
    default_realm = $REALM
    dns_lookup_realm = false
    dns_lookup_kdc = false
    dns_canonicalize_hostname = false
    rdns = false
    clockskew = 1
    udp_preference_limit = 1
[realms]
    $REALM = {
        kdc = 127.0.0.1:$PORT
    }
EOF
cat >"$DIR/kdc.conf" <<EOF
[kdcdefaults]
    kdc_ports = $PORT
    kdc_tcp_ports = $PORT
[realms]
    $REALM = {
        database_name = $DIR/principal
        key_stash_file = $DIR/stash
        acl_file = $DIR/kadm5.acl
        max_life = 1h
        max_renewable_life = 0
    }
[logging]
    kdc = FILE:$DIR/kdc.log
    default = FILE:$DIR/kdc.log
EOF
: >"$DIR/kadm5.acl"
export KRB5_CONFIG=$DIR/krb5.conf KRB5_KDC_PROFILE=$DIR/kdc.conf

admin() { # admin QUERY: kadmin.local, quiet unless it fails
  local out
  out=$(kadmin.local -q "$1" 2>&1) || die "kadmin.local -q '$1' failed: $out"
  if grep -qiE 'error|cannot|unable' <<<"$out"; then die "kadmin.local -q '$1': $out"; fi
}

master=$(head -c 24 /dev/urandom | base64)
kdb5_util create -s -r "$REALM" -P "$master" >/dev/null 2>"$DIR/kdb5_util.err" ||
  die "kdb5_util create failed: $(cat "$DIR/kdb5_util.err")"
for entry in "${USERS[@]}"; do
  name=${entry%%:*} password=${entry#*:}
  [ -n "$name" ] && [ "$name" != "$entry" ] || die "--user NAME:PASSWORD"
  admin "addprinc -pw $password $name"
done
for principal in "${SERVICES[@]}"; do
  admin "addprinc -randkey $principal"
  admin "ktadd -k $DIR/services.keytab $principal"
done
for principal in "${DECOYS[@]}"; do
  admin "addprinc -randkey $principal"
done
[ "${#SERVICES[@]}" -eq 0 ] || chmod 0600 "$DIR/services.keytab"
for name in "${KEYTAB_USERS[@]}"; do
  [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "--keytab-user NAME: letters, digits, . _ -"
  admin "addprinc -randkey $name"
  admin "ktadd -k $DIR/$name.keytab $name"
  chmod 0600 "$DIR/$name.keytab"
done
