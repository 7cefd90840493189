"""The one exception the testnet modules raise for a problem the user can act on.

It is a plain exception (no click): the command line turns it into its own
one-line error and exit code 2, and tests and benchmarks catch it directly.
"""

from __future__ import annotations


class TestnetError(Exception):
    """A problem the user can act on; the message is one line."""

    __test__ = False  # named Test...: tests that import it must not have pytest collect it
