#!/usr/bin/env python3
"""Container healthcheck for a validator: its metrics endpoint answers and its
finalized height grows.

Healthy when /metrics answers and `posnet_finalized_height` is higher than at
the previous check, or has not changed for less than STALL seconds (a height
may take a few rounds when a validator is down). The previous height and when
it last grew are kept in a small state file between checks.

    posnet-healthcheck [PORT] [STALL]      defaults: 9100 60
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request

METRIC = "posnet_finalized_height"
STATE = os.path.join(os.environ.get("TMPDIR", "/tmp"), "posnet-healthcheck.json")


def finalized_height(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
        for line in response.read().decode().splitlines():
            name, _, value = line.partition(" ")
            if name == METRIC:
                return float(value)
    raise LookupError(f"/metrics has no {METRIC}")


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9100
    stall = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    try:
        height = finalized_height(port)
    except (OSError, LookupError, ValueError) as exc:
        print(f"unhealthy: metrics on port {port}: {exc}")
        return 1
    now = time.time()
    try:
        with open(STATE) as f:
            last = json.load(f)
    except (OSError, ValueError):
        last = {"height": -1.0, "since": now}
    if height > last["height"]:
        last = {"height": height, "since": now}
        with open(STATE, "w") as f:
            json.dump(last, f)
    stuck = now - last["since"]
    if stuck >= stall:
        print(f"unhealthy: finalized height stuck at {height:.0f} for {stuck:.0f} s")
        return 1
    print(f"healthy: finalized height {height:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
