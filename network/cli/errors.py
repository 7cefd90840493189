"""The one error type of the `posnet` command line.

Every command reports a problem the user can fix the same way: one line,
"Error: ...", exit code 2, no traceback. Commands raise `UserError` for it,
and turn the plain exceptions of the modules they drive into it.
"""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """A one-line error the user can fix; click prints it as "Error: ..." without a traceback."""

    exit_code = 2
