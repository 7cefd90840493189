"""Pool share arithmetic at its edges: integers only, and an empty or wiped-out pool answers zero."""

from __future__ import annotations

from node.core import shares as S
from node.core.genesis import PPM


def test_the_exchange_rate_is_a_floored_integer_in_ppm() -> None:
    """Every node must compute the same rate: a float would round differently from one machine to the next."""
    rate = S.exchange_rate_ppm(total_shares=3, tokens=10)
    assert rate == 3_333_333 and type(rate) is int
    assert S.exchange_rate_ppm(total_shares=0, tokens=0) == PPM


def test_shares_of_a_pool_without_shares_are_worth_nothing() -> None:
    assert S.share_value(shares=5, total_shares=0, tokens=100) == 0
    assert S.share_value(shares=0, total_shares=0, tokens=0) == 0


def test_a_withdrawal_from_a_pool_whose_tokens_were_all_slashed_burns_no_shares() -> None:
    assert S.shares_to_burn(amount=10, total_shares=5, tokens=0) == 0
    assert S.shares_to_burn(amount=10, total_shares=5, tokens=7) == 8  # the ceiling of 10 * 5 / 7
