"""Files with personal data or secrets are 0600 from the first byte, whatever the umask."""
from __future__ import annotations

import os
import stat

from bridge.files import open_private, write_private


def test_private_files_are_owner_only_even_under_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        write_private(tmp_path / "a", b"x")
        with open_private(tmp_path / "b", "ab") as f:
            f.write(b"y")
        (tmp_path / "c").write_bytes(b"")
        os.chmod(tmp_path / "c", 0o666)
        with open_private(tmp_path / "c") as f:  # an existing file is narrowed before it is written
            f.write(b"z")
    finally:
        os.umask(old)

    assert [stat.S_IMODE((tmp_path / n).stat().st_mode) for n in "abc"] == [0o600] * 3
    assert (tmp_path / "c").read_bytes() == b"z"
