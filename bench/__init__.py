"""Throughput, latency and memory benchmark of the broker against a raw pyzmq forwarder
(the ceiling) and, when installed, the IRC servers ngIRCd and InspIRCd.

`make bench` runs it (`python -m bench.run`); `make bench-cluster` (`python -m
bench.cluster`) sets one broker against brokers behind one NATS server, and measures
failover; docs/PERFORMANCE.md explains the method and the figures.
"""
