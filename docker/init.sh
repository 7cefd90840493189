#!/bin/sh
# One-shot testnet setup for docker compose, run by the `init` service as the
# posnet user. It fills the data volume on first start and keeps what is there
# on later starts:
#
#   $POSNET_DATA/genesis.toml                 the chain's genesis
#   $POSNET_DATA/nodes/<name>/key.json        each validator's Ed25519 key
#   $POSNET_DATA/nodes/<name>/mqtt-password   each validator's broker password
#   $POSNET_DATA/broker-users/<user>          the password of each other broker
#                                             user (POSNET_BROKER_USERS)
#
# The `broker-init` service then hashes the passwords into the broker's
# password file with mosquitto_passwd.
#
# Environment: POSNET_VALIDATORS (names, space separated), POSNET_CHAIN_ID,
# POSNET_SLOT_MS (empty: the genesis default), POSNET_BROKER_USERS (broker
# users that are not validators, e.g. the bridge of docker/split), POSNET_DATA.
# `posnet` and `python3` are called by name and must be the environment posnet
# is installed in: the image puts its venv's bin first on PATH, and the tests
# that run this script put theirs first too.
set -eu

data=${POSNET_DATA:-/posnet}
validators=${POSNET_VALIDATORS:-v1 v2 v3 v4}
chain_id=${POSNET_CHAIN_ID:-posnet-compose}
slot_ms=${POSNET_SLOT_MS:-}
genesis=$data/genesis.toml
# shellcheck disable=SC2086  # split on purpose: names joined by single spaces
set -- $validators
validators="$*"

broker_users=${POSNET_BROKER_USERS:-}

say() { printf 'init: %s\n' "$*"; }
die() { printf 'init: error: %s\n' "$*" >&2; exit 1; }

umask 077  # keys and passwords: the posnet user only (broker-init reads them as root)
mkdir -p "$data/nodes"

# new_password FILE: a random password into FILE unless it has one already.
new_password() {
  [ -s "$1" ] && return 0
  python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$1.tmp"
  mv "$1.tmp" "$1"
  say "$2: generated broker password"
}

key_args=""
for name in $validators; do
  home=$data/nodes/$name
  mkdir -p "$home"
  if [ -s "$home/key.json" ]; then
    say "$name: keeping existing key"
  else
    posnet keys generate --name "$name" --out "$home/key.json"  # written atomically
  fi
  new_password "$home/mqtt-password" "$name"
  key_args="$key_args --key $home/key.json"
done

for user in $broker_users; do
  mkdir -p "$data/broker-users"
  new_password "$data/broker-users/$user" "broker user $user"
done

if [ -s "$genesis" ]; then
  # A kept genesis must name exactly the validators asked for: a node that is
  # not in it could never join, and one missing here would never be started.
  have=$(python3 -c 'import sys; from node.core.genesis import load_genesis
print(" ".join(v.name for v in load_genesis(sys.argv[1]).validators))' "$genesis")
  [ "$have" = "$validators" ] || die "the existing genesis has validators '$have' but '$validators' were asked for;
  start from scratch with: docker compose -f docker/compose.yml down -v"
  say "keeping existing genesis ($genesis: $have)"
else
  # shellcheck disable=SC2086  # key_args is a word list on purpose
  posnet genesis create --out "$genesis.tmp" --chain-id "$chain_id" \
    ${slot_ms:+--slot-ms "$slot_ms"} $key_args
  mv "$genesis.tmp" "$genesis"
  say "created genesis $genesis for chain $chain_id: $validators"
fi
say "ready"
