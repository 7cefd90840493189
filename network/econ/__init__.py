"""The staking economy: delegators with policies, many epochs, and what concentration they produce."""
