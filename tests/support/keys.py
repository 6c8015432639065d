"""One key ring per test process, for tests that open a store without a stack."""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from bridge.privacy.crypto import KeyRing


@functools.cache
def keys_file() -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"masking-keys-{os.getpid()}-")) / "keys.json"
    KeyRing.generate().save(path)
    return path


def shared_keys() -> KeyRing:
    return KeyRing.load(keys_file())
