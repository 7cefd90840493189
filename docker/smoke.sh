#!/usr/bin/env bash
# End-to-end smoke test of the compose testnet, in real containers:
#
#   1. prepare podman + podman-compose and the local base image, build a host
#      wheelhouse and the posnet image from it (docker/podman-up.sh);
#   2. start broker, init and validators in dependency order;
#   3. wait (bounded) until every validator logs finalized blocks, check each
#      validator's healthcheck and that the broker refuses anonymous clients;
#   4. kill one validator and check that the others keep finalizing; start it
#      again and check that it catches up from its disk and its peers
#      (with --split, instead: two brokers bridged, v1 v2 | v3 v4; partition
#      them and check that nobody finalizes, heal and check that all go on);
#   5. check safety over all logs (no two blocks finalized at one height);
#   6. always bring everything down again, volumes included.
#
#   docker/smoke.sh [--split]  exit 0 when all held, 1 with the reason otherwise
#
# Tunables (environment): SMOKE_PROJECT (posnet-smoke), SMOKE_MIN_FINALIZED (3
# heights per step), SMOKE_FINALIZE_TIMEOUT (180 s), SMOKE_PROGRESS_TIMEOUT
# (120 s), SMOKE_VICTIM (the last validator), PYTHON (python3, for the wheels).
set -euo pipefail

PROG=smoke
PROJECT=${SMOKE_PROJECT:-posnet-smoke}
# shellcheck source=docker/podman-up.sh
source "$(dirname "${BASH_SOURCE[0]}")/podman-up.sh"

MIN_FINALIZED=${SMOKE_MIN_FINALIZED:-3}
FINALIZE_TIMEOUT=${SMOKE_FINALIZE_TIMEOUT:-180}
PROGRESS_TIMEOUT=${SMOKE_PROGRESS_TIMEOUT:-120}
START=$(date +%s)
WORK=$(mktemp -d)
UP=0
SPLIT=0
case "${1:-}" in
  "") ;;
  --split)
    SPLIT=1
    COMPOSE_FILES+=("$DOCKER_DIR/split/compose.yml")
    ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

elapsed() { echo "$(($(date +%s) - START)) s"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((UP)); then
    if ((rc != 0)); then
      local svc name
      for svc in broker "${VALIDATORS[@]}"; do
        name=$(container_of "$svc") || continue
        [ -n "$name" ] || continue
        say "last lines of $svc ($(podman inspect --format '{{.State.Status}} exit {{.State.ExitCode}}' "$name" 2>/dev/null)):"
        podman logs --tail 6 "$name" 2>&1 | cut -c1-160 | sed "s/^/    $svc | /" >&2 || true
      done
    fi
    say "down: removing the $PROJECT containers, network and volumes"
    compose down -v >"$WORK/down.log" 2>&1 || say "warning: '$COMPOSE down -v' failed; see podman ps -a"
  fi
  rm -rf "$WORK"
  if ((rc == 0)); then
    say "PASSED in $(elapsed)"
  else
    say "smoke test FAILED after $(elapsed)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each validator's log (container stdout: JSON lines) into $WORK/logs/<service>.jsonl,
# then one line per validator: "<service> <finalized events> <highest finalized height>".
finality() {
  local svc name
  mkdir -p "$WORK/logs"
  chmod 755 "$WORK" "$WORK/logs"
  for svc in "$@"; do
    name=$(container_of "$svc")
    podman logs "$name" >"$WORK/logs/$svc.jsonl" 2>/dev/null || true
  done
  python3 - "$WORK/logs" "$@" <<'EOF'
import json, sys
for svc in sys.argv[2:]:
    count, top = 0, 0
    with open(f"{sys.argv[1]}/{svc}.jsonl", errors="replace") as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "finalized":
                count += 1
                top = max(top, int(event.get("height", 0)))
    print(svc, count, top)
EOF
}

# Fail at once when a validator that should run has exited.
require_running() {
  local svc name
  for svc in "$@"; do
    name=$(container_of "$svc")
    [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] ||
      die "$svc stopped ($(podman inspect --format 'exit {{.State.ExitCode}}' "$name")) while it should run"
  done
}

# Highest finalized height of each given service, as "svc=height" words.
heights_now() {
  local svc _count top
  while read -r svc _count top; do printf '%s=%s ' "$svc" "$top"; done < <(finality "$@")
}

# wait_heights TIMEOUT SVC=HEIGHT...: until each service has finalized HEIGHT.
wait_heights() {
  local timeout=$1 deadline svc _count top pair
  shift
  local -A target=()
  for pair in "$@"; do target[${pair%=*}]=${pair#*=}; done
  deadline=$(($(date +%s) + timeout))
  while :; do
    local behind=() report=()
    while read -r svc _count top; do
      report+=("$svc:$top")
      ((top >= target[$svc])) || behind+=("$svc<${target[$svc]}")
    done < <(finality "${!target[@]}")
    if ((${#behind[@]} == 0)); then
      say "finalized heights: ${report[*]}"
      return 0
    fi
    require_running "${!target[@]}"
    (($(date +%s) < deadline)) || die "after ${timeout} s: ${report[*]}; short of the target: ${behind[*]}"
    sleep 2
  done
}

# wait_progress TIMEOUT STEP SERVICE...: until each service finalized STEP more heights.
wait_progress() {
  local timeout=$1 step=$2 pair targets=()
  shift 2
  for pair in $(heights_now "$@"); do targets+=("${pair%=*}=$((${pair#*=} + step))"); done
  wait_heights "$timeout" "${targets[@]}"
}

engine_setup
build_image

mapfile -t VALIDATORS < <(validator_services)
for ((i = 1; i <= ${#VALIDATORS[@]}; i++)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$((9100 + i))") 2>/dev/null; then
    die "port $((9100 + i)) is in use; is another posnet testnet up? (its compose 'down' frees it)"
  fi
done
say "clean: removing what an earlier $PROJECT run may have left"
compose down -v >"$WORK/pre-down.log" 2>&1 || true

UP=1
staged_up
VICTIM=${SMOKE_VICTIM:-${VALIDATORS[-1]}}

say "wait: every validator finalizes $MIN_FINALIZED heights (at most ${FINALIZE_TIMEOUT} s)"
t0=$(date +%s)
wait_progress "$FINALIZE_TIMEOUT" "$MIN_FINALIZED" "${VALIDATORS[@]}"
say "first finality after $(($(date +%s) - t0)) s"

for svc in "${VALIDATORS[@]}"; do
  out=$(podman exec "$(container_of "$svc")" posnet-healthcheck 2>&1) || die "$svc healthcheck: $out"
  say "healthcheck $svc: $out"
done

# By address: this checks the broker's configuration, not the network's DNS.
broker_ip=$(podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(container_of broker)")
say "broker: an anonymous client must be refused (broker at $broker_ip)"
refusal=$(podman exec -i "$(container_of "${VALIDATORS[0]}")" python3 - "$broker_ip" <<'EOF'
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
result = []
client.on_connect = lambda _c, _u, _f, reason, _p: result.append(str(reason))
try:
    client.connect(sys.argv[1], 1883, keepalive=5)
    deadline = time.monotonic() + 10
    while not result and time.monotonic() < deadline:
        client.loop(timeout=0.2)
except OSError as exc:
    result.append(f"connection failed: {exc}")
print(result[0] if result else "no CONNACK")
EOF
)
[ "$refusal" = "Not authorized" ] || die "the broker answered an anonymous client with '$refusal', not 'Not authorized'"
say "broker: anonymous client refused ($refusal)"

# Crash a validator: the other three hold more than 2/3 and go on; restarted,
# it recovers its chain from its store and catches up from its peers.
crash_and_restart() {
  local survivors pair top=0
  say "fault: podman kill $VICTIM"
  podman kill "$(container_of "$VICTIM")" >/dev/null
  mapfile -t survivors < <(printf '%s\n' "${VALIDATORS[@]}" | grep -vx "$VICTIM")
  say "wait: ${survivors[*]} finalize $MIN_FINALIZED more heights without $VICTIM (at most ${PROGRESS_TIMEOUT} s)"
  wait_progress "$PROGRESS_TIMEOUT" "$MIN_FINALIZED" "${survivors[@]}"
  for pair in $(heights_now "${survivors[@]}"); do ((${pair#*=} > top)) && top=${pair#*=}; done
  say "recover: podman start $VICTIM; it must catch up to height $((top + 1)) (at most ${PROGRESS_TIMEOUT} s)"
  logged restart podman start "$(container_of "$VICTIM")"
  wait_heights "$PROGRESS_TIMEOUT" "$VICTIM=$((top + 1))"
}

# Cut broker-b off side-a: neither half (2 of 4 equal stakes) has more than
# 2/3, so no one finalizes; reconnected, the bridge comes back and all go on.
partition_and_heal() {
  local net="${PROJECT}_side-a" bridge before after svc _count top grew=()
  bridge=$(container_of broker-b)
  say "fault: partition v1 v2 | v3 v4: podman network disconnect $net broker-b"
  podman network disconnect "$net" "$bridge"
  sleep 3 # a height already in its last step may still complete
  before=$(heights_now "${VALIDATORS[@]}")
  before=${before% }
  say "wait: 10 s; no validator may finalize more than one height ($before)"
  sleep 10
  after=$(heights_now "${VALIDATORS[@]}")
  after=${after% }
  local -A was=()
  for pair in $before; do was[${pair%=*}]=${pair#*=}; done
  for pair in $after; do
    svc=${pair%=*} top=${pair#*=}
    ((top <= was[$svc] + 1)) || grew+=("$svc:${was[$svc]}->$top")
  done
  ((${#grew[@]} == 0)) || die "a minority side kept finalizing during the partition: ${grew[*]}"
  say "partition held: $after"
  say "heal: podman network connect $net broker-b"
  podman network connect "$net" "$bridge"
  say "wait: all finalize $MIN_FINALIZED more heights (at most ${PROGRESS_TIMEOUT} s)"
  wait_progress "$PROGRESS_TIMEOUT" "$MIN_FINALIZED" "${VALIDATORS[@]}"
}

if ((SPLIT)); then
  partition_and_heal
else
  crash_and_restart
fi

say "safety: no two blocks finalized at one height, over all logs"
finality "${VALIDATORS[@]}" >/dev/null
podman run --rm -v "$WORK/logs:/logs:ro" --entrypoint python3 "$POSNET_IMAGE" -c '
import sys
from pathlib import Path
from network.testnet.logcheck import analyse_dir, format_report
report = analyse_dir(Path("/logs"))
print("\n".join("    " + line for line in format_report(report)))
sys.exit(0 if report.ok and report.common_height > 0 else 1)
' >&2 || die "the finality logs show a safety violation or no common height (report above)"
