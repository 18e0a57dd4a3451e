"""The ZeroMQ bus: PUB/REP sockets and the pure schema-v1 wire codec."""
