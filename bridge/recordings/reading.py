"""Opening a stored recording's audio for a reader: the API's audio route and
subject exports both go through here, so both refuse the same way (shredded,
gone) and decrypt the same way."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bridge.privacy.crypto import recording_key_context
from bridge.recordings import sealed


class AudioUnavailable(Exception):
    """The recording's audio cannot be read: `reason` is shredded or gone."""

    def __init__(self, reason: str):
        super().__init__(f"the recording's audio is {reason}")
        self.reason = reason


@dataclass(frozen=True)
class StoredAudio:
    recording_id: uuid.UUID
    path: Path
    dek: bytes | None  # None: a plaintext file, stored before sealing existed

    def pieces(self) -> Iterator[bytes]:
        """The whole plaintext, a chunk at a time (blocking file I/O: run off the event loop)."""
        if self.dek is None:
            with open(self.path, "rb") as f:
                while piece := f.read(sealed.CHUNK_SIZE):
                    yield piece
            return
        yield from sealed.read_range(self.path, self.dek, self.recording_id, 0, sealed.plaintext_size(self.path))


async def open_audio(store, row: dict) -> StoredAudio:
    """The audio of recording `row` (as `store.recordings.get` returns it), its data key
    unwrapped; raises AudioUnavailable, or CryptoError if the key does not open."""
    if row["shredded_at"] is not None:
        raise AudioUnavailable("shredded")
    path = Path(row["storage_path"])
    if not path.is_file():
        raise AudioUnavailable("gone")
    if not row["sealed"]:
        return StoredAudio(row["id"], path, None)
    key = await store.recordings.key(row["id"])
    if key is None:  # shredded since the row was read
        raise AudioUnavailable("shredded")
    return StoredAudio(row["id"], path, store.keys.open(key.key_id, key.blob, recording_key_context(row["id"])))
