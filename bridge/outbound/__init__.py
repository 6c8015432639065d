"""Outbound HTTP to URLs a business names: the rules (`policy.py`, pure) and
the one client that applies them (`client.py`).

Below `config` in the layers, so settings are checked by the same rules as the
URLs of the API; nothing here imports the rest of the bridge.
"""
