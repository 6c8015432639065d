"""Data subjects' rights carried out: what the bridge holds about one person,
gathered from the store and the recordings domain (an export). The pure
rules of requests and deadlines are in bridge/privacy/subject_access.py."""
