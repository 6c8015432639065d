"""The soak counts a recording as verified only when it decrypts, with its
wrapped key, to the audio its row's size and sha256 describe."""
from __future__ import annotations

import uuid
from pathlib import Path

from bench.soak import verified
from bridge.privacy.crypto import KeyRing, recording_key_context
from bridge.recordings.sealed import new_dek, seal_file

AUDIO = b"RIFF" + bytes(range(256)) * 700  # spans several chunks


def sealed_row(tmp_path: Path, keys: KeyRing) -> dict:
    recording_id, dek = uuid.uuid4(), new_dek()
    (tmp_path / "plain.wav").write_bytes(AUDIO)
    digest = seal_file(tmp_path / "plain.wav", tmp_path / "sealed.wav", dek, recording_id, chunk_size=4096)
    wrapped = keys.seal(dek, recording_key_context(recording_id))
    return {"id": recording_id, "storage_path": str(tmp_path / "sealed.wav"), "sealed": True,
            "bytes": digest.bytes, "sha256": digest.sha256, "key_id": wrapped.key_id, "wrapped_key": wrapped.blob}


def test_a_sealed_recording_is_verified_by_its_plaintext_not_by_the_file_on_disk(tmp_path):
    keys = KeyRing.generate()
    assert verified(keys, sealed_row(tmp_path, keys))


def test_a_tampered_or_foreign_recording_is_not_verified(tmp_path):
    keys = KeyRing.generate()
    row = sealed_row(tmp_path, keys)
    assert not verified(keys, {**row, "id": uuid.uuid4()}), "opened as another recording"
    assert not verified(KeyRing.generate(), row), "opened without its key"
    data = bytearray(Path(row["storage_path"]).read_bytes())
    data[-40] ^= 1
    Path(row["storage_path"]).write_bytes(bytes(data))
    assert not verified(keys, row), "a flipped bit went unnoticed"
