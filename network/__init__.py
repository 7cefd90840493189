"""posnet.network: everything between validators: MQTT transport, brokers, the simulated network, testnets."""
