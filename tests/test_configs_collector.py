"""Offline checks of the OpenTelemetry Collector, Alloy and Prometheus configs in collector-config/.

No collector or Alloy binary runs here, so these check structure and the
project's rules: current component names, every pipeline references defined
components, memory_limiter first, span metrics before sampling, message content
removed, the same sampling policies and content rule in every tier.
The Prometheus fallback config is checked by the real `promtool check config`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "collector-config"
SINGLE = CONFIG / "otelcol.yaml"
AGENT = CONFIG / "gateway" / "otelcol-agent.yaml"
LOADBALANCER = CONFIG / "gateway" / "otelcol-loadbalancer.yaml"
SAMPLER = CONFIG / "gateway" / "otelcol-sampler.yaml"
COLLECTOR_CONFIGS = [SINGLE, AGENT, LOADBALANCER, SAMPLER]

# Component types of otelcol-contrib 0.161 (the release the tests run) that these configs
# may use, by their current names (each module's metadata.yaml `type`). The names renamed
# in 0.144 (exporters `otlp`/`otlphttp`) and later (`resourcedetection`, `k8sattributes`, `loadbalancing`,
# `prometheusremotewrite`, `spanmetrics`: 0.158 already has the new names) still load as deprecated aliases
# with a warning; they, the removed `logging` and `loki` exporters and the removed
# spanmetrics processor are deliberately absent.
CURRENT_COMPONENTS = {
    "receivers": {"otlp", "prometheus"},
    "processors": {"memory_limiter", "resource_detection", "resource", "transform", "tail_sampling", "batch", "k8s_attributes", "attributes", "filter"},
    "exporters": {"otlp_grpc", "otlp_http", "load_balancing", "prometheus_remote_write", "debug"},
    "connectors": {"span_metrics", "forward"},
    "extensions": {"health_check", "pprof", "zpages"},
}
DEPRECATED = {
    "exporters": {"otlp", "otlphttp", "logging", "loki", "loadbalancing", "prometheusremotewrite"},
    "processors": {"spanmetrics", "resourcedetection", "k8sattributes"},
    "connectors": {"spanmetrics"},
}
CONTENT_ATTRIBUTES = {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def kind(component_id: str) -> str:
    return component_id.split("/", 1)[0]


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
class TestCollectorConfig:
    def test_uses_current_component_names(self, path: Path) -> None:
        config = load(path)
        for section, allowed in CURRENT_COMPONENTS.items():
            for component_id in config.get(section) or {}:
                assert kind(component_id) not in DEPRECATED.get(section, set()), f"{path.name}: deprecated {section} {component_id}"
                assert kind(component_id) in allowed, f"{path.name}: unknown {section} type {component_id!r}"

    def test_pipelines_reference_defined_components_and_every_component_is_used(self, path: Path) -> None:
        config = load(path)
        service = config["service"]
        connectors = set(config.get("connectors") or {})
        defined = {
            "receivers": set(config.get("receivers") or {}) | connectors,
            "processors": set(config.get("processors") or {}),
            "exporters": set(config.get("exporters") or {}) | connectors,
        }
        used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
        for name, pipeline in service["pipelines"].items():
            assert kind(name) in {"traces", "metrics", "logs"}, name
            assert pipeline.get("receivers") and pipeline.get("exporters"), f"{path.name}: pipeline {name} is incomplete"
            for role in used:
                for component_id in pipeline.get(role, []):
                    assert component_id in defined[role], f"{path.name}: pipeline {name} uses undefined {role[:-1]} {component_id}"
                    used[role].add(component_id)
        for role in used:
            unused = defined[role] - used[role] - (connectors if role != "processors" else set())
            assert not unused, f"{path.name}: defined but unused {role}: {unused}"
        for connector in connectors:  # a connector must both receive and emit
            assert connector in used["exporters"] and connector in used["receivers"], f"{path.name}: connector {connector} is half-wired"
        assert set(service.get("extensions", [])) == set(config.get("extensions") or {}), f"{path.name}: extensions not enabled"

    def test_memory_limiter_first_and_batch_last(self, path: Path) -> None:
        config = load(path)
        connectors = set(config.get("connectors") or {})
        for name, pipeline in config["service"]["pipelines"].items():
            processors = pipeline.get("processors", [])
            fed_by_a_receiver = any(r not in connectors for r in pipeline["receivers"])
            if fed_by_a_receiver:
                assert processors and kind(processors[0]) == "memory_limiter", f"{path.name}: {name} must start with memory_limiter"
            batches = [i for i, p in enumerate(processors) if kind(p) == "batch"]
            assert batches in ([], [len(processors) - 1]), f"{path.name}: {name}: batch must be the last processor"

    def test_otlp_receiver_listens_on_all_interfaces(self, path: Path) -> None:
        protocols = load(path)["receivers"]["otlp"]["protocols"]
        assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
        if "http" in protocols:
            assert protocols["http"]["endpoint"] == "0.0.0.0:4318"

    def test_health_check_and_own_telemetry(self, path: Path) -> None:
        config = load(path)
        assert config["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
        (reader,) = config["service"]["telemetry"]["metrics"]["readers"]
        assert reader["pull"]["exporter"]["prometheus"] == {"host": "0.0.0.0", "port": 8888}


def _content_rule(config: dict) -> dict:
    transform = config["processors"]["transform/genai_content"]
    return {"trace": transform["trace_statements"], "log": transform["log_statements"]}


def test_message_content_is_removed_unless_kept_in_every_entry_tier() -> None:
    single = load(SINGLE)
    rule = _content_rule(single)
    contexts = {group["context"] for group in rule["trace"] + rule["log"]}
    assert contexts == {"span", "spanevent", "log"}
    for group in rule["trace"] + rule["log"]:
        deleted = {m for s in group["statements"] for m in re.findall(r'delete_key\(attributes, "([^"]+)"\)', s)}
        assert deleted == CONTENT_ATTRIBUTES
        for statement in group["statements"]:
            assert statement.endswith('where resource.attributes["llm.content.keep"] != "true"'), statement
    for name, pipeline in single["service"]["pipelines"].items():
        if "otlp" in pipeline["receivers"] and kind(name) in {"traces", "logs"}:
            assert "transform/genai_content" in pipeline["processors"], name
    # The agent tier is where content enters in the scale-out layout: same rule, word for word.
    assert _content_rule(load(AGENT)) == rule
    for name in ("traces", "logs"):
        assert "transform/genai_content" in load(AGENT)["service"]["pipelines"][name]["processors"]


def test_tail_sampling_keeps_errors_slow_llm_traces_and_a_share_of_the_rest() -> None:
    policies = {p["name"]: p for p in load(SINGLE)["processors"]["tail_sampling"]["policies"]}
    assert policies["errors"]["status_code"]["status_codes"] == ["ERROR"]
    slow = {p["type"]: p for p in policies["slow-llm-traces"]["and"]["and_sub_policy"]}
    assert slow["latency"]["latency"]["threshold_ms"] > 0
    assert slow["string_attribute"]["string_attribute"]["key"] == "gen_ai.provider.name"
    assert 0 < policies["everything-else"]["probabilistic"]["sampling_percentage"] < 100
    assert load(SAMPLER)["processors"]["tail_sampling"] == load(SINGLE)["processors"]["tail_sampling"]


def test_span_metrics_are_taken_before_sampling_with_gen_ai_dimensions() -> None:
    for path in (SINGLE, LOADBALANCER):
        config = load(path)
        dimensions = [d["name"] for d in config["connectors"]["span_metrics"]["dimensions"]]
        assert {"gen_ai.provider.name", "gen_ai.request.model"} <= set(dimensions)
        pipelines = config["service"]["pipelines"]
        for name, pipeline in pipelines.items():
            if "span_metrics" in pipeline["exporters"]:
                assert "tail_sampling" not in pipeline.get("processors", []), f"{path.name}: {name} samples before span_metrics"
                assert all(kind(r) == "otlp" for r in pipeline["receivers"]), f"{path.name}: span_metrics must see spans as received"
            if "span_metrics" in pipeline["receivers"]:
                assert kind(name) == "metrics"
    assert load(LOADBALANCER)["connectors"]["span_metrics"] == load(SINGLE)["connectors"]["span_metrics"]
    assert "tail_sampling" not in load(LOADBALANCER).get("processors", {})


def test_signals_go_to_the_right_backends() -> None:
    exporters = load(SINGLE)["exporters"]
    assert exporters["otlp_http/mimir"]["endpoint"].endswith("http://mimir:9009/otlp}")
    assert exporters["otlp_http/loki"]["endpoint"].endswith("http://loki:3100/otlp}")
    assert exporters["otlp_grpc/tempo"]["endpoint"].endswith("tempo:4317}")
    pipelines = load(SINGLE)["service"]["pipelines"]
    assert pipelines["metrics"]["exporters"] == ["otlp_http/mimir"]
    assert pipelines["traces"]["exporters"] == ["otlp_grpc/tempo"]
    assert pipelines["logs"]["exporters"] == ["otlp_http/loki"]


def test_self_scrape_job_is_the_one_the_alerts_select() -> None:
    for path in (SINGLE, LOADBALANCER, SAMPLER):
        (job,) = load(path)["receivers"]["prometheus/self"]["config"]["scrape_configs"]
        assert job["job_name"] == "otelcol"
        assert job["static_configs"][0]["targets"] == ["127.0.0.1:8888"]
    # Scraped by a Prometheus the job is "otelcol"; pushed by the self-scrape, the backend sees the
    # collector's service.name (tests/test_pipeline_dashboards.py shows it with the real collector).
    alerts = (REPO / "grafana" / "rules" / "otel-llm-alerts.yaml").read_text()
    selectors = re.findall(r'job=~"([^"]+)"', alerts)
    assert selectors
    for selector in selectors:
        for job in ("otelcol", "otelcol-llm", "otelcol-contrib"):
            assert re.fullmatch(selector, job), (selector, job)


def test_gateway_routes_traces_by_trace_id_to_the_sampler_tier() -> None:
    config = load(LOADBALANCER)
    load_balancing = config["exporters"]["load_balancing"]
    assert load_balancing["routing_key"] == "traceID"
    assert load_balancing["resolver"]["dns"]["port"] == "4317"  # a string in contrib 0.161 (validate rejects an int)
    assert int(load(SAMPLER)["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":")[-1]) == 4317
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["span_metrics", "load_balancing"]
    agent_exporter = load(AGENT)["exporters"]["otlp_grpc/gateway"]["endpoint"]
    assert agent_exporter.endswith(":4317}")


# ---------------------------------------------------------------------- Prometheus fallback


def test_prometheus_fallback_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    path = CONFIG / "prometheus" / "prometheus.yaml"
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "otel-llm-alerts.yaml" in result.stdout, "the rule files must be found relative to the config"
    (job,) = load(path)["scrape_configs"]
    assert job["job_name"] == "otel-llm" and job["static_configs"][0]["targets"] == ["localhost:9464"]


# ---------------------------------------------------------------------- Alloy

ALLOY_FILES = sorted((CONFIG / "alloy").glob("*.alloy"))
ALLOY_COMPONENTS = {
    "otelcol.receiver.otlp", "otelcol.processor.memory_limiter", "otelcol.processor.resourcedetection",
    "otelcol.processor.transform", "otelcol.connector.spanmetrics", "otelcol.processor.tail_sampling",
    "otelcol.processor.batch", "otelcol.exporter.otlphttp", "otelcol.exporter.otlp",
    "prometheus.scrape", "prometheus.remote_write", "prometheus.exporter.self",
}
_BLOCK = re.compile(r'^([a-z_]+(?:\.[a-z_]+)+)\s+"(\s*[A-Za-z0-9_]*\s*)"\s*\{', re.M)
_REFERENCE = re.compile(r"\b((?:otelcol|prometheus)(?:\.[a-z_]+)+)\.([A-Za-z0-9_]+)\.(input|receiver|targets)\b")


def _blank(text: str) -> str:
    """Comments and string contents replaced by spaces (same length, so indices still match)."""

    def spaces(match: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))

    def string(match: re.Match[str]) -> str:
        return '"' + " " * (len(match.group(0)) - 2) + '"'

    pattern = re.compile(r'"(?:[^"\\]|\\.)*"|/\*.*?\*/|//[^\n]*', re.S)
    return pattern.sub(lambda m: string(m) if m.group(0).startswith('"') else spaces(m), text)


def _alloy_blocks(text: str) -> dict[tuple[str, str], str]:
    """Top-level components: (name, label) -> body."""
    blank = _blank(text)
    blocks = {}
    for match in _BLOCK.finditer(blank):
        label = text[match.start(2) : match.end(2)]
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(blank)):
            depth += {"{": 1, "}": -1}.get(blank[end], 0)
            if depth == 0:
                break
        key = (match.group(1), label)
        assert key not in blocks, f"duplicate component {key}"
        blocks[key] = blank[match.end() : end]
    return blocks


@pytest.mark.parametrize("path", ALLOY_FILES, ids=lambda p: p.name)
def test_alloy_config_is_balanced_and_references_resolve(path: Path) -> None:
    text = path.read_text()
    code = _blank(text)
    depth = 0
    for char in code:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0, f"{path.name}: unbalanced '}}'"
    assert depth == 0, f"{path.name}: unbalanced braces"
    assert code.count("[") == code.count("]") and code.count("(") == code.count(")")
    blocks = _alloy_blocks(text)
    assert blocks, f"{path.name}: no components"
    for name, _label in blocks:
        assert name in ALLOY_COMPONENTS, f"{path.name}: unknown component {name}"
    for name, label, _export in _REFERENCE.findall(code):
        assert (name, label) in blocks, f"{path.name}: reference to undeclared {name}.{label}"
    for (name, label), body in blocks.items():  # every otelcol component but exporters forwards somewhere
        if name.startswith("otelcol.") and ".exporter." not in name:
            assert re.search(r"\boutput\s*\{", body), f"{path.name}: {name}.{label} has no output block"
        referenced = f"{name}.{label}." in code
        is_sink = name.startswith("otelcol.receiver") or name == "prometheus.scrape"
        assert referenced or is_sink, f"{path.name}: {name}.{label} is declared but nothing sends to it"


def test_alloy_matches_the_collector_rules() -> None:
    text = (CONFIG / "alloy" / "config.alloy").read_text()
    for attribute in CONTENT_ATTRIBUTES:
        assert text.count(f'delete_key(attributes, \\"{attribute}\\") where resource.attributes[\\"llm.content.keep\\"] != \\"true\\"') == 3
    assert 'name = "gen_ai.provider.name"' in text and 'name = "gen_ai.request.model"' in text
    assert 'status_codes = ["ERROR"]' in text and "threshold_ms = 10000" in text and "sampling_percentage = 10" in text
    assert '"http://mimir:9009/otlp"' in text and '"http://loki:3100/otlp"' in text and '"tempo:4317"' in text
    fallback = (CONFIG / "alloy" / "fallback-scrape.alloy").read_text()
    assert 'job_name        = "otel-llm"' in fallback and '"demo:9464"' in fallback
