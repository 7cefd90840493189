"""Running many simulations at once: local worker processes or a Dask cluster."""
