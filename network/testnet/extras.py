"""How to install an optional extra (`report`: matplotlib), said the way that works where posnet runs.

`pip install 'posnet[report]'` asks the package index for a distribution of
that name, which is not what a developer running from a clone needs (and may
fetch something else entirely): there the extra comes from the checkout
itself, `pip install -e '.[report]'`. So the hint depends on how this copy of
posnet was installed.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

# the directory that holds `network/` and `node/`: the checkout's root when running from source
SOURCE_ROOT = Path(__file__).resolve().parent.parent.parent


def installed_editable() -> bool:
    """pip records an editable install (`pip install -e .`) in the distribution's direct_url.json.

    Every copy of the metadata is looked at: run from the checkout, the
    source tree's own posnet.egg-info comes first on the path and carries no
    direct_url.json, while the installed one beside it does.
    """
    for dist in metadata.distributions(name="posnet"):
        raw = dist.read_text("direct_url.json")
        try:
            if raw and json.loads(raw).get("dir_info", {}).get("editable"):
                return True
        except (ValueError, AttributeError):
            continue
    return False


def from_checkout() -> bool:
    """Running from a source tree: installed editable, or imported from a directory with pyproject.toml."""
    return installed_editable() or (SOURCE_ROOT / "pyproject.toml").is_file()


def install_hint(extra: str) -> str:
    """The pip command that adds `extra` to this copy of posnet."""
    if from_checkout():
        return f"pip install -e '.[{extra}]' in {SOURCE_ROOT}"
    return f"pip install 'posnet[{extra}]'"
