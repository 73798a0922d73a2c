#!/bin/sh
# Regenerates server.key and server.crt: a self-signed ECDSA P-256 / SHA-256 certificate, valid
# for 10 years, for flipt.dev.local, localhost and 127.0.0.1. Clients trust it by passing
# server.crt as their CA. It is marked CA:TRUE with keyCertSign because BoringSSL (quiche) only
# accepts a self-signed certificate as its own trust anchor when it may sign certificates.
# The config comes from stdin so the system openssl.cnf cannot add extensions.
set -eu
cd "$(dirname "$0")"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
  -keyout server.key -out server.crt -config /dev/stdin <<'CONFIG'
[req]
prompt = no
distinguished_name = dn
x509_extensions = ext
[dn]
CN = flipt.dev.local
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign
extendedKeyUsage = serverAuth
subjectAltName = DNS:flipt.dev.local, DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
CONFIG
