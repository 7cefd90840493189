#!/bin/sh
# Entry point of `broker-b` in the two-broker split (docker/split/compose.yml):
# the same broker configuration as `broker` (same users, no anonymous clients)
# plus a bridge that carries every posnet topic both ways between the two
# brokers, logging in to `broker` as the user `bridge`. The bridge password is
# made by init; mosquitto only takes it in its configuration file, so that file
# is written here, readable by root only, and read before mosquitto drops root.
set -eu

base=${BROKER_CONF:-/posnet-broker/mosquitto.conf}
password_file=${BRIDGE_PASSWORD_FILE:-/posnet/broker-users/bridge}
remote=${BRIDGE_REMOTE:-broker:1883}
conf=/tmp/broker-b.conf

[ -s "$password_file" ] || { echo "broker-b: error: no bridge password at $password_file (did init run with POSNET_BROKER_USERS=bridge?)" >&2; exit 1; }
umask 077
{
  cat "$base"
  printf '\n# bridge to the other side of the split\n'
  printf 'connection posnet-split\n'
  printf 'address %s\n' "$remote"
  printf 'remote_username bridge\n'
  printf 'remote_password %s\n' "$(cat "$password_file")"
  printf 'remote_clientid posnet-broker-b\n'
  printf 'bridge_protocol_version mqttv50\n'
  printf 'topic posnet/# both 1\n'
  printf 'try_private true\n'
  printf 'cleansession true\n'
  printf 'restart_timeout 1 5\n'
  printf 'keepalive_interval 5\n'  # notice a cut link within seconds, not minutes
} > "$conf"
echo "broker-b: bridging posnet/# with $remote"
exec mosquitto -c "$conf"
