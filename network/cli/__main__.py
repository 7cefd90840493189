"""`python -m network.cli`: the same command line as the `posnet` script."""

from network.cli import main

main()
