"""A testnet across hosts: the inventory, the small CA and certificates, and each host's broker configuration.

Everything here is made once, on one machine, and copied to the hosts
(see README "Several machines"); the nodes themselves only need TLS from
``network.transport.tls``. The inventory and broker modules use the
standard library only, so ``docker/gen-compose.py`` can import them.
"""
