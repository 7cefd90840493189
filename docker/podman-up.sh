#!/usr/bin/env bash
# Run the compose testnet with podman and podman-compose on a machine without a
# container registry (the variant CI uses; with Docker and internet you only
# need `docker compose -f docker/compose.yml up`).
#
#   docker/podman-up.sh [-p PROJECT] [-f OVERLAY.yml]...
#
# It prepares the engine (../shared/tools/container-setup: podman, podman-compose
# and a local base image standing in for python:3.12-slim and eclipse-mosquitto),
# builds a wheelhouse on the host, builds the image offline from it, and starts
# the services in dependency order. The order is enforced here, one stage at a
# time, because podman-compose turns depends_on into podman's --requires, which
# will not start a container whose one-shot dependency (init) has already exited,
# and because podman before 4.6 cannot wait for service_healthy.
#
# Also sourced by docker/smoke.sh for its functions.
set -euo pipefail

DOCKER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$DOCKER_DIR")
export POSNET_IMAGE=${POSNET_IMAGE:-posnet:local}
PROG=${PROG:-podman-up}
PROJECT=${PROJECT:-posnet}
COMPOSE_FILES=("$DOCKER_DIR/compose.yml")
WORK=${WORK:-}
ENV_FILE=""

say() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "$PROG" "$*" >&2; }
die() {
  say "FAILED: $*"
  exit 1
}

# Run a command with its output in $WORK/<step>.log; show the log's tail if it fails.
logged() {
  local step=$1
  shift
  if ! "$@" >"$WORK/$step.log" 2>&1; then
    tail -n 40 "$WORK/$step.log" >&2
    die "$step: '$*' failed (log above)"
  fi
}

# podman, podman-compose and the base images, then BASE_IMAGE, MQTT_IMAGE and
# COMPOSE in this shell. Skipped when they are already set (env sourced by hand).
engine_setup() {
  if [ -n "${COMPOSE:-}" ] && [ -n "${BASE_IMAGE:-}" ] && [ -n "${MQTT_IMAGE:-}" ] && command -v podman >/dev/null; then
    say "container engine: using COMPOSE=$COMPOSE BASE_IMAGE=$BASE_IMAGE MQTT_IMAGE=$MQTT_IMAGE from the environment"
    return
  fi
  local setup="$REPO/../shared/tools/container-setup"
  [ -f "$setup" ] || die "container setup script not found at $setup (expected beside the repository)"
  say "container engine: running $(basename "$setup") (first time: a few minutes)"
  logged engine-setup bash "$setup"
  ENV_FILE=$(sed -n 's/.*done: source //p' "$WORK/engine-setup.log" | tail -n 1)
  if [ -z "$ENV_FILE" ] || [ ! -f "$ENV_FILE" ]; then
    die "container setup did not name its environment file"
  fi
  # shellcheck source=/dev/null
  source "$ENV_FILE"
  : "${COMPOSE:?not set by $ENV_FILE}" "${BASE_IMAGE:?not set by $ENV_FILE}" "${MQTT_IMAGE:?not set by $ENV_FILE}"
  export BASE_IMAGE MQTT_IMAGE
  say "container engine: $(podman --version), $($COMPOSE --version 2>/dev/null | head -n 1)"
}

# Wheels for posnet, its dependencies and setuptools (its build backend) in
# docker/wheelhouse, then the image built from them with no package index.
build_image() {
  local python=${PYTHON:-python3} host_py image_py
  host_py=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  image_py=$(podman run --rm --entrypoint python3 "$BASE_IMAGE" -c 'import sys; print("%d.%d" % sys.version_info[:2])') ||
    die "cannot run python3 in $BASE_IMAGE"
  [ "$host_py" = "$image_py" ] ||
    die "$python is Python $host_py but $BASE_IMAGE has $image_py: its wheels would not install; set PYTHON to a python$image_py"
  say "wheelhouse: pip wheel posnet and its dependencies (Python $host_py) into docker/wheelhouse"
  logged wheelhouse "$python" -m pip wheel --disable-pip-version-check "$REPO" setuptools -w "$DOCKER_DIR/wheelhouse"
  say "image: podman build $POSNET_IMAGE from $BASE_IMAGE, offline from the wheelhouse"
  logged build podman build -f "$DOCKER_DIR/Dockerfile" -t "$POSNET_IMAGE" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg PIP_NO_INDEX=1 \
    --build-arg PIP_FIND_LINKS=/wheelhouse \
    "$REPO"
  say "image: $POSNET_IMAGE is $(podman image inspect --format '{{.Size}}' "$POSNET_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
}

compose() {
  local args=(-p "$PROJECT") f
  for f in "${COMPOSE_FILES[@]}"; do args+=(-f "$f"); done
  $COMPOSE "${args[@]}" "$@"
}

# The container of a compose service (podman-compose and docker compose label them alike).
container_of() {
  podman ps -a --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}

validator_services() {
  compose config --services 2>/dev/null | grep -E '^v[0-9]+$' | sort -V
}

# Start the services as depends_on orders them: init and broker-init must exit
# 0, the broker (and broker-b of the split) must pass its healthcheck, then the
# validators start.
staged_up() {
  local svc name rc i
  for svc in init broker-init; do
    say "up: $svc (one-shot)"
    logged "up-$svc" compose up -d --no-deps "$svc"
    name=$(container_of "$svc")
    rc=$(podman wait "$name")
    podman logs "$name" 2>&1 | sed "s/^/    $svc | /" >&2
    [ "$rc" = 0 ] || die "$svc exited with status $rc"
  done
  for svc in $(compose config --services 2>/dev/null | grep -E '^broker(-[a-z0-9]+)?$' | grep -vx broker-init | sort); do
    say "up: $svc"
    logged "up-$svc" compose up -d --no-deps "$svc"
    name=$(container_of "$svc")
    for ((i = 0; i < 30; i++)); do
      podman healthcheck run "$name" >/dev/null 2>&1 && break
      [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] || {
        podman logs "$name" >&2
        die "$svc stopped (log above)"
      }
      sleep 1
    done
    ((i < 30)) || die "$svc did not become healthy in 30 s"
  done
  mapfile -t VALIDATORS < <(validator_services)
  ((${#VALIDATORS[@]} > 0)) || die "no validator services (v1, v2, ...) in ${COMPOSE_FILES[*]}"
  say "up: ${VALIDATORS[*]}"
  logged up-validators compose up -d --no-deps "${VALIDATORS[@]}"
}

main() {
  while getopts "p:f:h" opt; do
    case $opt in
      p) PROJECT=$OPTARG ;;
      f) COMPOSE_FILES+=("$(cd "$(dirname "$OPTARG")" && pwd)/$(basename "$OPTARG")") ;;
      *)
        sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
    esac
  done
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  engine_setup
  build_image
  staged_up
  say "testnet $PROJECT is up; metrics of v1 on http://127.0.0.1:9101/metrics. Next:"
  local files="" f
  for f in "${COMPOSE_FILES[@]}"; do files+=" -f ${f#"$PWD"/}"; done
  [ -z "$ENV_FILE" ] || printf '    source %s   # sets COMPOSE\n' "$ENV_FILE" >&2
  cat >&2 <<EOF
    \$COMPOSE -p $PROJECT$files logs -f v1        # finality events of v1
    podman kill ${PROJECT}_v4_1                     # crash a validator
    \$COMPOSE -p $PROJECT$files down -v           # stop, and forget keys and genesis
EOF
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
