"""Throughput, latency and memory benchmark of the broker against a raw pyzmq forwarder
(the ceiling) and, when installed, the IRC servers ngIRCd and InspIRCd.

`make bench` runs it (`python -m bench.run`); docs/PERFORMANCE.md explains the method and
the figures.
"""
