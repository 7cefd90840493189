"""posnet.node: one validator: the pure consensus core, ledger, keys, storage, runtime."""
