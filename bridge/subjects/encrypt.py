"""An export's archive encrypted as it is written, by the system's `gpg`: to a
passphrase (symmetric, AES-256) or to a recipient's public key. The zip goes
through gpg's standard input: the clear archive is never on disk, and the
encrypted file is 0600 from the moment it exists."""
from __future__ import annotations

import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from bridge.files import open_private


class EncryptionFailed(Exception):
    """gpg is missing, or refused (a wrong recipient, an unreadable passphrase file)."""


def gpg_command(passphrase_file: Path | None, recipient: str | None) -> list[str]:
    """gpg's arguments: exactly one of `passphrase_file` and `recipient`."""
    if (passphrase_file is None) == (recipient is None):
        raise ValueError("encrypt with a passphrase file or to a recipient, one of them")
    gpg = shutil.which("gpg")
    if gpg is None:
        raise EncryptionFailed("gpg is not installed (apt-get install gnupg)")
    base = [gpg, "--batch", "--no-tty", "--quiet", "--yes", "--output", "-"]
    if passphrase_file is not None:  # not left in the operator's gpg-agent either
        return base + ["--pinentry-mode", "loopback", "--no-symkey-cache", "--passphrase-file", str(passphrase_file),
                       "--symmetric", "--cipher-algo", "AES256"]
    return base + ["--trust-model", "always", "--encrypt", "--recipient", recipient]


@contextmanager
def encrypted_sink(path: Path, passphrase_file: Path | None = None,
                   recipient: str | None = None) -> Iterator[IO[bytes]]:
    """A stream to write the clear archive to; `path` gets it encrypted. On any
    error gpg is stopped and `path` removed (raises EncryptionFailed when gpg fails)."""
    command = gpg_command(passphrase_file, recipient)
    with open_private(path) as out:
        gpg = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.PIPE)
        try:
            yield gpg.stdin
            gpg.stdin.close()
            error = gpg.stderr.read()
            if gpg.wait(timeout=120) != 0:
                raise EncryptionFailed(f"gpg failed: {error.decode(errors='replace').strip()[:300]}")
        except BaseException:
            gpg.kill()
            gpg.wait()
            path.unlink(missing_ok=True)
            raise
        finally:
            gpg.stderr.close()
