"""Recordings on disk and in the store, as the call path leaves them, without a call."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from bridge.recordings import seal_recording, sealed_path
from bridge.store import Store
from bridge.store.recordings import RecordingRow


async def store_recording(store: Store, call_id: uuid.UUID, directory: Path, audio: bytes,
                          sealed: bool = True) -> uuid.UUID:
    """A recording of `audio` for `call_id`: sealed under a key of its own, or
    a plaintext file (as stored before sealing existed). Returns its id."""
    recording_id = uuid.uuid4()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{call_id}.wav"
    path.write_bytes(audio)
    key_id = wrapped_key = None
    if sealed:
        plain, path = path, sealed_path(path)
        key, _ = seal_recording(plain, path, recording_id, store.keys)
        plain.unlink()
        key_id, wrapped_key = key.key_id, key.blob
    await store.recordings.insert(RecordingRow(recording_id, call_id, str(path), "wav", len(audio), 1.5,
                                              hashlib.sha256(audio).hexdigest(), key_id, wrapped_key))
    return recording_id
