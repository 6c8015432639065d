"""The sealed recording format: round trips, ranges, and every kind of tampering detected."""
import hashlib
import os
import uuid

import pytest

from bridge.recordings.sealed import (
    CHUNK_SIZE, HEADER, TAG_BYTES, NotSealed, SealedFileCorrupt, UnsupportedVersion, new_dek, plaintext_size,
    read_range, seal_file,
)

RECORDING = uuid.UUID("0b8c7a1e-5d3f-4c2a-9e6b-1f2d3c4b5a69")
SMALL = 16  # a small chunk size keeps multi-chunk cases small


def sealed(tmp_path, data: bytes, chunk_size: int = SMALL, recording_id=RECORDING):
    src, dest = tmp_path / "plain.wav", tmp_path / "rec.sealed"
    src.write_bytes(data)
    dek = new_dek()
    digest = seal_file(src, dest, dek, recording_id, chunk_size)
    return dest, dek, digest


def read_all(path, dek, recording_id=RECORDING) -> bytes:
    return b"".join(read_range(path, dek, recording_id, 0, plaintext_size(path)))


def chunk_span(index: int, chunk_size: int = SMALL) -> slice:
    start = HEADER.size + index * (chunk_size + TAG_BYTES)
    return slice(start, start + chunk_size + TAG_BYTES)


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL, 5 * SMALL + 7])
def test_any_size_round_trips_and_reports_its_plaintext_size(tmp_path, size):
    data = os.urandom(size)
    path, dek, digest = sealed(tmp_path, data)
    assert read_all(path, dek) == data
    assert plaintext_size(path) == size
    assert digest.bytes == size and digest.sha256 == hashlib.sha256(data).hexdigest()


def test_the_default_64k_chunks_round_trip_a_recording_sized_file(tmp_path):
    data = os.urandom(3 * CHUNK_SIZE + 1234)
    path, dek, _ = sealed(tmp_path, data, CHUNK_SIZE)
    assert read_all(path, dek) == data
    assert path.stat().st_size == HEADER.size + len(data) + 4 * TAG_BYTES


def test_the_sealed_file_holds_no_plaintext(tmp_path):
    data = b"RIFF" + b"speech " * 200
    path, _, _ = sealed(tmp_path, data, CHUNK_SIZE)
    blob = path.read_bytes()
    assert b"RIFF" not in blob and b"speech" not in blob


@pytest.mark.parametrize("start, end", [(0, 1), (5, 16), (15, 17), (16, 32), (10, 70), (47, 48), (0, 80), (80, 80)])
def test_a_range_reads_exactly_its_bytes_across_chunk_boundaries(tmp_path, start, end):
    data = os.urandom(5 * SMALL)
    path, dek, _ = sealed(tmp_path, data)
    assert b"".join(read_range(path, dek, RECORDING, start, end)) == data[start:end]


def test_a_range_opens_only_the_chunks_that_hold_it(tmp_path):
    data = os.urandom(5 * SMALL)
    path, dek, _ = sealed(tmp_path, data)
    blob = bytearray(path.read_bytes())
    blob[chunk_span(0)] = bytes(SMALL + TAG_BYTES)  # chunks 0 and 4 ruined: a range between still reads
    blob[chunk_span(4)] = bytes(SMALL + TAG_BYTES)
    path.write_bytes(bytes(blob))
    assert b"".join(read_range(path, dek, RECORDING, SMALL, 4 * SMALL)) == data[SMALL:4 * SMALL]


def test_a_range_outside_the_plaintext_is_refused(tmp_path):
    path, dek, _ = sealed(tmp_path, b"x" * 20)
    with pytest.raises(ValueError):
        next(read_range(path, dek, RECORDING, 10, 21))


def test_a_flipped_bit_is_detected(tmp_path):
    path, dek, _ = sealed(tmp_path, os.urandom(3 * SMALL))
    blob = bytearray(path.read_bytes())
    blob[chunk_span(1).start + 3] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(SealedFileCorrupt, match="chunk 1"):
        read_all(path, dek)


def test_reordered_chunks_are_detected(tmp_path):
    path, dek, _ = sealed(tmp_path, os.urandom(3 * SMALL))
    blob = bytearray(path.read_bytes())
    first, second = blob[chunk_span(0)], blob[chunk_span(1)]
    blob[chunk_span(0)], blob[chunk_span(1)] = second, first
    path.write_bytes(bytes(blob))
    with pytest.raises(SealedFileCorrupt, match="chunk 0"):
        read_all(path, dek)


def test_a_file_cut_at_a_chunk_boundary_is_detected(tmp_path):
    path, dek, _ = sealed(tmp_path, os.urandom(3 * SMALL))
    path.write_bytes(path.read_bytes()[:chunk_span(2).start])  # the layout still fits: two full chunks
    assert plaintext_size(path) == 2 * SMALL
    with pytest.raises(SealedFileCorrupt, match="chunk 1"):  # but chunk 1 was not sealed as the last
        read_all(path, dek)


def test_a_file_cut_inside_a_chunk_tag_does_not_fit_the_layout(tmp_path):
    path, _, _ = sealed(tmp_path, os.urandom(3 * SMALL))
    path.write_bytes(path.read_bytes()[:chunk_span(2).start + TAG_BYTES - 1])
    with pytest.raises(SealedFileCorrupt, match="layout"):
        plaintext_size(path)


def test_a_file_moved_to_another_recording_does_not_open(tmp_path):
    path, dek, _ = sealed(tmp_path, os.urandom(2 * SMALL))
    with pytest.raises(SealedFileCorrupt):
        read_all(path, dek, recording_id=uuid.uuid4())


def test_another_key_does_not_open_the_file(tmp_path):
    path, _, _ = sealed(tmp_path, os.urandom(2 * SMALL))
    with pytest.raises(SealedFileCorrupt):
        read_all(path, new_dek())


def test_a_changed_chunk_size_in_the_header_is_detected(tmp_path):
    path, dek, _ = sealed(tmp_path, os.urandom(4 * SMALL))
    blob = bytearray(path.read_bytes())
    blob[HEADER.size - 4:HEADER.size] = (2 * SMALL + TAG_BYTES).to_bytes(4, "big")
    path.write_bytes(bytes(blob))
    with pytest.raises(SealedFileCorrupt):
        read_all(path, dek)


def test_a_plaintext_wav_is_not_a_sealed_file(tmp_path):
    path = tmp_path / "old.wav"
    path.write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(NotSealed):
        plaintext_size(path)


def test_an_unknown_format_version_is_refused(tmp_path):
    path, dek, _ = sealed(tmp_path, b"abc")
    blob = bytearray(path.read_bytes())
    blob[6] = 9
    path.write_bytes(bytes(blob))
    with pytest.raises(UnsupportedVersion):
        read_all(path, dek)


def test_sealing_leaves_no_temporary_file_and_replaces_the_destination(tmp_path):
    dest = tmp_path / "rec.sealed"
    dest.write_bytes(b"an older attempt")
    src = tmp_path / "plain.wav"
    src.write_bytes(b"audio")
    dek = new_dek()
    seal_file(src, dest, dek, RECORDING)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.wav", "rec.sealed"]
    assert read_all(dest, dek) == b"audio"


def test_a_missing_source_leaves_nothing_behind(tmp_path):
    with pytest.raises(FileNotFoundError):
        seal_file(tmp_path / "absent.wav", tmp_path / "rec.sealed", new_dek(), RECORDING)
    assert list(tmp_path.iterdir()) == []
