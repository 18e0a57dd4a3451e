"""avatar-bridge's SteamVR companion: a dashboard overlay and the HMD pose as the published head pose.

``overlay.py`` (what the panel shows, where its buttons are; pure), ``hmd.py`` (HMD matrix -> head
rotation; pure), ``openvr_layer.py`` (the only code that touches the ``openvr`` module), ``app.py``
(the loop between them, the bus and the control socket). See ../README.md.
"""
