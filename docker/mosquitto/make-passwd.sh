#!/bin/sh
# Run by the `broker-init` service (the broker's image, as root): hash every
# validator's password (nodes/<name>/mqtt-password) and every other broker
# user's (broker-users/<user>), written by `init` into the posnet data volume,
# into the broker's password file with mosquitto_passwd. The passwords themselves are
# kept by init; this file is derived from them, so it is rebuilt on each start.
set -eu

nodes=${POSNET_NODES_DIR:-/posnet/nodes}
others=${POSNET_BROKER_USERS_DIR:-/posnet/broker-users}
out=${MOSQUITTO_PASSWORD_FILE:-/posnet-broker/auth/passwd}

tmp="$out.tmp"
umask 077
: > "$tmp"
users=""
for f in "$nodes"/*/mqtt-password; do
  [ -s "$f" ] || { echo "broker-init: error: no passwords under $nodes (did init run?)" >&2; exit 1; }
  user=$(basename "$(dirname "$f")")
  printf '%s:%s\n' "$user" "$(cat "$f")" >> "$tmp"
  users="$users $user"
done
for f in "$others"/*; do
  [ -s "$f" ] || continue
  user=$(basename "$f")
  printf '%s:%s\n' "$user" "$(cat "$f")" >> "$tmp"
  users="$users $user"
done
mosquitto_passwd -U "$tmp"
# mosquitto reads the file as its own user and warns about looser modes.
if [ "$(id -u)" = 0 ]; then chown mosquitto:mosquitto "$tmp"; fi
chmod 0600 "$tmp"
mv "$tmp" "$out"
echo "broker-init: $out has users:$users"
