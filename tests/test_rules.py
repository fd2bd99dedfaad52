"""Alert and recording rules: `promtool check rules` and `promtool test rules`.

The unit tests (grafana/rules-tests/) must show every alert both firing and not
firing; this module checks that they do, then runs them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((REPO / "grafana" / "rules").glob("*.yaml"))
TEST_FILES = sorted((REPO / "grafana" / "rules-tests").glob("*.test.yaml"))
TROUBLESHOOTING = REPO / "docs" / "troubleshooting.md"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def alerts() -> dict[str, dict]:
    found = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    found[rule["alert"]] = rule
    return found


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        document = yaml.safe_load(path.read_text())
        assert {(path.parent / f).resolve() for f in document["rule_files"]} == {p.resolve() for p in RULE_FILES}
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert set(alerts()) <= firing, f"never shown firing: {set(alerts()) - firing}"
    assert set(alerts()) <= quiet, f"never shown quiet: {set(alerts()) - quiet}"


def test_alerts_have_severity_summary_and_an_existing_runbook() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", TROUBLESHOOTING.read_text(), re.M)
    }
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        target, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert (REPO / target).is_file() and anchor in anchors, f"{name}: runbook {rule['annotations']['runbook_url']} not found"


def test_recording_rules_follow_the_level_metric_operation_convention() -> None:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    assert re.fullmatch(r"[a-z_]+:[a-z_0-9]+:[a-z_0-9]+", rule["record"]), rule["record"]
