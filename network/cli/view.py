"""`posnet view`: the browser replay of a trace, or a live view of a testnet, served on localhost."""

from __future__ import annotations

import threading
import webbrowser
from pathlib import Path

import click

from network.cli.errors import UserError
from network.view.model import TraceError, verdict
from network.view.server import ViewServer
from network.view.source import FileSource, open_source


@click.command("view")
@click.argument("target", metavar="FILE-or-DIR", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="0: any free port",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="the address to listen on")
@click.option("--no-open", is_flag=True, help="print the address; do not open a browser")
def view(target: Path, port: int, host: str, no_open: bool) -> None:
    """Replay a trace in the browser, or follow a testnet directory live.

    FILE is a trace written by `posnet sim --trace FILE` or `posnet testnet
    trace --out FILE`; DIR is a testnet directory (its logs are re-read every
    second while the page is open). The page shows the validators as a ring
    sized by stake, the messages between them, a timeline with the faults and
    penalties, each node's height, round, step, lock and votes, and the safety
    and liveness verdicts. Links open at a point: `#event=N`, `#round=H.R` or
    `?t=MS`, with `&node=v2` to select a node. Ctrl-C stops the server.
    """
    try:
        source = open_source(target)
    except TraceError as exc:
        raise UserError(str(exc)) from None
    try:
        server = ViewServer((host, port), source)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): pick another --port (0: any free one)"
        ) from None
    if isinstance(source, FileSource):
        events = source.trace.events
        what = f"{target}: {len(events)} events, {verdict(events).describe()}"
    else:
        what = f"testnet {target} (following its logs)"
    click.echo(f"{what}\nserving at {server.url}  (Ctrl-C stops)")
    if not no_open:
        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        server.server_close()
