"""Protocol adapters: bus subscribers that speak VMC, VRChat OSC, Live Link Face and iFacialMocap.

Each adapter is a frozen config dataclass plus a pure encoder on the shared skeleton
(``sender.UdpSender``: ``send(state)``, ``stats()``, ``close()``), declared as ``ADAPTER`` in its
module; ``registry.create_adapters`` makes them by name and ``runner.AdapterThread`` feeds one from
the bus. See docs/adapters.md.
"""
