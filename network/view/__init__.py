"""`posnet view`: a browser replay of a run's trace, or a live view of a testnet's logs.

model.py turns trace lines into what the page needs beyond the raw events
(stake shares, the Nakamoto coefficient, fault windows, round marks, the
verdict); source.py reads a trace file once or follows a testnet directory
as its logs grow; server.py serves the page in static/ and the events over
HTTP with the standard library only, so a viewer needs nothing a node does
not already have.
"""
