"""Helpers the tests share: a signed 4-validator chain, real brokers, real node processes, bounded waits.

They live apart from the test modules so that pytest collects only ``test_*.py`` and so that
nothing outside ``tests/`` has a reason to reach in here (product code and ``bench/`` never
import ``tests``; tests/test_import_rules.py checks it).
"""
