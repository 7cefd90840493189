"""posnet.node: everything one validator is: the pure consensus core, the ledger, keys, storage and the runtime."""
