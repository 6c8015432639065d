"""Where Asterisk lives is found, not assumed: its module directory on any
architecture, and templates that are missing are an error, not an empty render."""
from pathlib import Path

import pytest

from bridge.stack.asterisk import ModuleDirNotFound, TemplatesMissing, copy_sounds, find_module_dir, render_templates


def modules_at(root: Path, inner: str) -> None:
    directory = root / inner.lstrip("/")
    directory.mkdir(parents=True)
    (directory / "app_stasis.so").write_bytes(b"\x7fELF")


@pytest.mark.parametrize("inner", ["/usr/lib/aarch64-linux-gnu/asterisk/modules",
                                   "/usr/lib/x86_64-linux-gnu/asterisk/modules",
                                   "/usr/lib/riscv64-linux-gnu/asterisk/modules",
                                   "/usr/lib/asterisk/modules", "/usr/lib64/asterisk/modules"])
def test_the_module_directory_is_found_whatever_the_architecture_or_layout(tmp_path, inner):
    modules_at(tmp_path, inner)
    assert find_module_dir(tmp_path) == inner


def test_a_directory_without_modules_does_not_count(tmp_path):
    (tmp_path / "usr/lib/x86_64-linux-gnu/asterisk/modules").mkdir(parents=True)  # left by a removed package
    modules_at(tmp_path, "/usr/lib/asterisk/modules")
    assert find_module_dir(tmp_path) == "/usr/lib/asterisk/modules"


def test_no_asterisk_at_all_is_an_error_naming_where_it_looked(tmp_path):
    with pytest.raises(ModuleDirNotFound, match="usr/lib/\\*/asterisk/modules"):
        find_module_dir(tmp_path)


def test_an_empty_template_directory_is_an_error_not_an_empty_render(tmp_path):
    with pytest.raises(TemplatesMissing, match="MASKING_DIALPLAN_DIR"):
        render_templates({}, tmp_path)


def test_missing_sounds_are_an_error_too(tmp_path):
    with pytest.raises(TemplatesMissing):
        copy_sounds(tmp_path / "out", tmp_path / "no-sounds")
