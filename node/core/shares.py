"""Pool shares: a delegation is a number of shares, and what they are worth moves with the pool.

As in Cosmos x/staking, and as wstETH or rETH receipt tokens do, a member
holds a fixed count of shares and the pool holds the member tokens behind
all of them: `value = shares * tokens / total_shares`. A slash lowers the
tokens once and every share with them, whoever holds it (shares can be
transferred); compounded rewards raise the tokens and every share with them.

Rounding never creates value. A deposit gets the floor of the shares it
pays for; a withdrawal burns the ceiling of the shares its amount is
worth. What a floor leaves stays in the pool, for the holders who remain.
Pure integer functions; the ledger applies them.
"""

from __future__ import annotations

from node.core.genesis import PPM


def share_value(shares: int, total_shares: int, tokens: int) -> int:
    """What `shares` of a pool with `total_shares` over `tokens` member tokens are worth (floor)."""
    return shares * tokens // total_shares if total_shares else 0


def shares_for_deposit(amount: int, total_shares: int, tokens: int) -> int:
    """Shares minted for depositing `amount` (floor): 1:1 into an empty pool, else at the exchange rate.

    0 when the pool's shares are worth nothing (every token slashed away):
    the ledger refuses such a deposit rather than mint unbounded shares.
    """
    if total_shares == 0:
        return amount
    return amount * total_shares // tokens if tokens else 0


def shares_to_burn(amount: int, total_shares: int, tokens: int) -> int:
    """Shares a withdrawal of `amount` tokens costs (ceiling); the caller checks the holder has that many."""
    return -(-amount * total_shares // tokens) if tokens else 0


def exchange_rate_ppm(total_shares: int, tokens: int) -> int:
    """Tokens per share, in parts per million (1,000,000 before any slash or compounding)."""
    return tokens * PPM // total_shares if total_shares else PPM
