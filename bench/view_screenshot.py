"""The docs' pictures of `posnet view`: a simulated 2|2 partition-heal run, or a testnet directory.

Without `--testnet` it runs the simulator (the run docs/views.md names,
replayable with the command this prints), serves its trace with the view's
own server on a free port, and has headless Chromium photograph the page
opened at the last event at or before `--at-ms` with `--node` selected.
With `--testnet DIR` it serves that directory as `posnet view DIR` does and
photographs it at its last event (or `--at-ms`). A script rather than a test:
it makes a file for people to look at, and says nothing pass/fail.

    python bench/view_screenshot.py                          # docs/view-partition-heal.png
    python bench/view_screenshot.py --at-ms 6100 --out /tmp/healed.png
    python bench/view_screenshot.py --testnet net --node v3 --out docs/view-faults.png
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from network.sim.config import SimConfig
from network.sim.plans import parse_fault_spec
from network.sim.runner import run_simulation
from network.transport.broker import free_port
from network.view.server import ViewServer
from network.view.source import FileSource, TestnetSource

FAULTS = "partition=v1+v2|v3+v4@100-6000"
HEIGHTS = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/view-partition-heal.png"))
    parser.add_argument(
        "--at-ms",
        type=int,
        default=None,
        help="time to show [default: 3000 (mid-partition), a testnet's end]",
    )
    parser.add_argument(
        "--testnet", type=Path, default=None, help="photograph this testnet directory instead"
    )
    parser.add_argument("--node", default="v1", help="the node whose panel is open")
    parser.add_argument("--size", default="1280,800", help="window size, W,H")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        print("needs chromium on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as workdir:
        source: FileSource | TestnetSource
        if args.testnet is not None:
            source = TestnetSource(args.testnet)
            events, _, _ = source.since(0)
            at_ms = args.at_ms if args.at_ms is not None else max(e.get("t", 0) for e in events)
        else:
            trace = Path(workdir) / "run.jsonl"
            with trace.open("w") as out:
                run_simulation(SimConfig(validators=4, heights=HEIGHTS, faults=parse_fault_spec(FAULTS)), out)
            source = FileSource(trace)
            events = source.trace.events
            at_ms = args.at_ms if args.at_ms is not None else 3000
        index = max(i for i, event in enumerate(events) if event.get("t", 0) <= at_ms)
        server = ViewServer(("127.0.0.1", free_port()), source)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"{server.url}#event={index}&node={args.node}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(
                [
                    chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={args.size}", "--virtual-time-budget=5000",
                    f"--screenshot={args.out.resolve()}", url,
                ],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
        finally:
            server.shutdown()
            server.server_close()
    print(f"wrote {args.out}: event {index} of {len(events)} (t <= {at_ms} ms), node {args.node}")
    if isinstance(source, FileSource):
        print(f"replay: {source.trace.header['replay']} --trace run.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
