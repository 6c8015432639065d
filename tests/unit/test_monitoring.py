"""The alert rules and the Grafana dashboard in monitoring/ speak of metrics
the bridge exports (a renamed metric silently disables an alert otherwise),
and cover what the operations guide promises to alert on."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import bridge.metrics  # noqa: F401  (registers the bridge's metrics)

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
# Series that come from elsewhere: Prometheus itself, and the trunk
# registration gauge the carrier-trunk work adds (docs/operations.md).
EXTERNAL = {"up", "masking_trunk_registered"}
METRIC_NAME = re.compile(r"\b((?:masking|process|python)_[a-z_]+)\b")


def exported_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def rules() -> list[dict]:
    document = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    document = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in document["panels"] for target in panel.get("targets", [])]


def test_every_alert_and_panel_names_only_metrics_the_bridge_exports():
    known = exported_names() | EXTERNAL
    for expression in [rule["expr"] for rule in rules()] + dashboard_expressions():
        for name in METRIC_NAME.findall(expression):
            assert name in known, f"{name} in {expression!r} is not exported"


def test_the_alerts_the_operations_guide_promises_exist_with_summaries():
    by_name = {rule["alert"]: rule for rule in rules()}
    for alert in ("MaskingAriDisconnected", "MaskingWebhooksDeadLettered", "MaskingSpoolGrowing",
                  "MaskingCallFailureRatio", "MaskingTrunkRegistrationDown", "MaskingDatabaseDown"):
        assert alert in by_name
        assert by_name[alert]["annotations"]["summary"]
        assert by_name[alert]["labels"]["severity"] in {"warning", "critical"}
    guide = (MONITORING.parent / "docs" / "operations.md").read_text()
    assert all(f"`{name}`" in guide for name in by_name), "an alert is not explained in docs/operations.md"


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian package prometheus) is not installed")
def test_promtool_accepts_the_rules():
    result = subprocess.run(["promtool", "check", "rules", str(MONITORING / "alerts.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
