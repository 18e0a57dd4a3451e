"""Protocol adapters: bus subscribers that speak VMC, VRChat OSC, Live Link Face and iFacialMocap.

Each adapter has a frozen config dataclass and a class with ``send(state)``, ``stats()`` and
``close()`` (the skeleton in ``sender.UdpSender``); ``registry.create_adapters`` makes them by name and ``runner.AdapterThread`` feeds one from
the bus. See docs/adapters.md.
"""
