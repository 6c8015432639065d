"""The Asterisk configuration templates render completely and keep identities private."""
import re
from pathlib import Path

import pytest

from bridge.config import Settings
from bridge.stack.asterisk import AsteriskInstall, render_templates, template_values

DIALPLAN = Path(__file__).resolve().parents[2] / "dialplan"


@pytest.fixture(scope="module")
def rendered():
    values = template_values(Settings(), AsteriskInstall(root=Path("/"), module_dir="/x"), "/tmp/instance")
    return render_templates(values, DIALPLAN)


def test_every_conf_template_is_rendered(rendered):
    assert set(rendered) == {p.name for p in DIALPLAN.glob("*.conf")}
    assert "pjsip.conf" in rendered and "extensions.conf" in rendered


def test_no_placeholder_is_left_unfilled(rendered):
    leftovers = {name: re.findall(r"\{\{.*?\}\}", text) for name, text in rendered.items() if "{{" in text}
    assert leftovers == {}


def test_settings_reach_the_rendered_files(rendered):
    assert "bind = 127.0.0.1:5060" in rendered["pjsip.conf"]
    assert "/x" in "".join(rendered.values())


def test_unknown_placeholder_is_an_error_naming_it(tmp_path):
    (tmp_path / "x.conf").write_text("port = {{ no_such_setting }}\n")
    with pytest.raises(KeyError, match="no_such_setting"):
        render_templates({"sip_port": "5060"}, tmp_path)


def test_placeholders_with_inner_spaces_are_filled(tmp_path):
    (tmp_path / "x.conf").write_text("a = {{sip_port}}, b = {{ sip_port }}\n")
    assert render_templates({"sip_port": "5060"}, tmp_path) == {"x.conf": "a = 5060, b = 5060\n"}


def endpoints(pjsip: str) -> dict[str, dict[str, str]]:
    """Effective options of each `type = endpoint` section, templates applied."""
    sections: list[tuple[str, list[str], dict[str, str]]] = []
    for line in pjsip.splitlines():
        line = line.split(";", 1)[0].strip()
        if m := re.fullmatch(r"\[([^\]]+)\](?:\(([^)]*)\))?", line):
            parents = [p.strip() for p in (m.group(2) or "").split(",") if p.strip() and p.strip() != "!"]
            sections.append((m.group(1), parents, {}))
        elif "=" in line and sections:
            key, value = (part.strip() for part in line.split("=", 1))
            sections[-1][2][key] = value
    templates = {name: opts for name, parents, opts in sections}
    result = {}
    for name, parents, opts in sections:
        merged = {}
        for parent in parents:
            merged.update(templates[parent])
        merged.update(opts)
        if merged.get("type") == "endpoint" and parents:
            result[name] = merged
    return result


@pytest.mark.parametrize("trunk", ["carrier-in", "carrier-out"])
@pytest.mark.parametrize("option", ["send_rpid", "send_diversion", "send_connected_line", "direct_media"])
def test_trunks_never_leak_identity_or_bypass_the_media_path(rendered, trunk, option):
    assert endpoints(rendered["pjsip.conf"])[trunk][option] == "no"
