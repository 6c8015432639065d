"""Encrypting a file for a person with the system's gpg (OpenPGP), so data the
operator must hand on (the contact list of a breach's affected individuals)
never touches the disk in clear: the plaintext goes to gpg's standard input,
its ciphertext to a 0600 file renamed into place once complete.

Either symmetric, with a passphrase read from a file (`--passphrase-file`,
never on the command line, where `ps` shows it; not cached by the agent), or
to a public key in the operator's keyring (`--recipient`).
"""
from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from bridge.files import open_private


class GpgError(Exception):
    """gpg is missing or refused (its message, which holds no plaintext)."""


def gpg_arguments(passphrase_file: Path | None, recipient: str | None) -> list[str]:
    if (passphrase_file is None) == (recipient is None):
        raise ValueError("give exactly one of a passphrase file and a recipient")
    base = ["--batch", "--yes", "--quiet", "--no-tty", "--output", "-"]
    if passphrase_file is not None:
        return [*base, "--pinentry-mode", "loopback", "--no-symkey-cache", "--passphrase-file", str(passphrase_file),
                "--symmetric", "--cipher-algo", "AES256"]
    return [*base, "--trust-model", "always", "--encrypt", "--recipient", recipient or ""]


async def encrypt_to_file(plaintext: bytes, path: Path, passphrase_file: Path | None = None,
                          recipient: str | None = None, timeout: float = 60.0) -> None:
    """Write `plaintext` encrypted to `path` (0600), or raise GpgError and leave no file."""
    gpg = shutil.which("gpg")
    if gpg is None:
        raise GpgError("gpg is not installed (apt-get install gnupg)")
    partial = path.with_name(f".{path.name}.partial")
    try:
        process = await asyncio.create_subprocess_exec(gpg, *gpg_arguments(passphrase_file, recipient),
                                                       stdin=asyncio.subprocess.PIPE,
                                                       stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
        try:
            ciphertext, errors = await asyncio.wait_for(process.communicate(plaintext), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise GpgError(f"gpg did not finish in {timeout:.0f} s") from None
        if process.returncode != 0 or not ciphertext:
            reason = errors.decode(errors="replace").strip().splitlines()
            raise GpgError(f"gpg failed: {reason[-1] if reason else f'exit {process.returncode}'}")
        with open_private(partial) as out:
            out.write(ciphertext)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
