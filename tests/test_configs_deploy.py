"""Offline checks of deploy/: compose files, backend configs, Dockerfile, Helm values.

No Docker engine runs here. What can be checked is: YAML well-formed, compose
files valid against the compose-spec JSON schema (vendored by the
`check-jsonschema` package), every referenced file exists, images pinned, and
ports and service names agree between compose, the collector config, the
backend configs and Grafana's provisioning.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_FILES = [COMPOSE, DEPLOY / "compose.lgtm.yaml"]
COLLECTOR = REPO / "collector-config" / "otelcol.yaml"
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARD_PROVIDERS = REPO / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
KUBERNETES = DEPLOY / "kubernetes"
ALL_YAML = sorted(
    p for d in ("deploy", "collector-config", "grafana") for p in (REPO / d).rglob("*") if p.suffix in {".yaml", ".yml"}
)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def services() -> dict:
    return load(COMPOSE)["services"]


def published(service: dict) -> dict[int, int]:
    """container port -> host port."""
    ports = {}
    for entry in service.get("ports", []):
        host, container = str(entry).split(":")[-2:]
        ports[int(container.split("/")[0])] = int(host)
    return ports


def env_default(value: str) -> str:
    """'${env:X:-http://mimir:9009/otlp}' -> 'http://mimir:9009/otlp'."""
    match = re.fullmatch(r"\$\{(?:env:)?\w+:-(.*)\}", value)
    return match.group(1) if match else value


def host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"grpc://{url}")
    return parsed.hostname or "", parsed.port or {"http": 80, "https": 443}[parsed.scheme]


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_is_well_formed(path: Path) -> None:
    assert yaml.safe_load(path.read_text()) is not None


# ---------------------------------------------------------------------- compose


def _compose_schema() -> dict:
    try:
        import check_jsonschema
    except ImportError:
        pytest.skip("check-jsonschema is not installed (it vendors the compose-spec schema): pip install check-jsonschema")
    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec_schema(path: Path) -> None:
    import jsonschema

    schema = _compose_schema()
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(load(path)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_references_existing_files_and_pins_images(path: Path) -> None:
    for name, service in load(path)["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (path.parent / source).resolve().exists(), f"{name}: volume source {source} does not exist"
        if "build" in service:
            context = (path.parent / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), f"{name}: Dockerfile missing"
        image = service.get("image", "")
        if "build" not in service:
            repository, _, tag = image.rpartition(":")
            assert repository and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: image {image!r} is not pinned to a release"


def test_compose_ports_agree_with_the_configs() -> None:
    svc = services()
    collector = load(COLLECTOR)
    # collector: OTLP, own telemetry, health check
    otlp = collector["receivers"]["otlp"]["protocols"]
    collector_ports = {int(otlp[p]["endpoint"].rsplit(":", 1)[1]) for p in ("grpc", "http")}
    collector_ports.add(collector["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]["port"])
    collector_ports.add(int(collector["extensions"]["health_check"]["endpoint"].rsplit(":", 1)[1]))
    assert collector_ports == set(published(svc["otelcol"])) == {4317, 4318, 8888, 13133}
    assert svc["otelcol"]["volumes"][0].startswith("../collector-config/otelcol.yaml:")
    # backends: the port each listens on is the port compose publishes and the collector/Grafana use
    mimir_port = load(DEPLOY / "mimir" / "mimir.yaml")["server"]["http_listen_port"]
    tempo = load(DEPLOY / "tempo" / "tempo.yaml")
    loki_port = load(DEPLOY / "loki" / "loki.yaml")["server"]["http_listen_port"]
    assert mimir_port in published(svc["mimir"]) and loki_port in published(svc["loki"])
    assert tempo["server"]["http_listen_port"] in published(svc["tempo"])
    tempo_grpc = int(tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1])
    exporters = collector["exporters"]
    assert host_port(env_default(exporters["otlp_http/mimir"]["endpoint"])) == ("mimir", mimir_port)
    assert host_port(env_default(exporters["otlp_grpc/tempo"]["endpoint"])) == ("tempo", tempo_grpc)
    assert host_port(env_default(exporters["otlp_http/loki"]["endpoint"])) == ("loki", loki_port)
    # the demo pushes to the collector's OTLP HTTP port and serves /metrics where the scrapes look
    demo_env = svc["demo"]["environment"]
    assert host_port(env_default(demo_env["OTEL_EXPORTER_OTLP_ENDPOINT"])) == ("otelcol", 4318)
    assert published(svc["demo"]) == {9464: 9464}
    assert "demo:9464" in (REPO / "collector-config" / "alloy" / "fallback-scrape.alloy").read_text()
    # Alloy (profile) must not take the collector's host ports
    assert not set(published(svc["alloy"]).values()) & set(published(svc["otelcol"]).values())


def test_grafana_provisioning_agrees_with_compose() -> None:
    svc = services()
    datasources = {d["uid"]: d for d in load(DATASOURCES)["datasources"]}
    expected = {"mimir": ("mimir", 9009, "/prometheus"), "tempo": ("tempo", 3200, ""), "loki": ("loki", 3100, "")}
    for uid, (service, port, path) in expected.items():
        url = urlparse(datasources[uid]["url"])
        assert (url.hostname, url.port, url.path) == (service, port, path), uid
        assert service in svc and port in published(svc[service])
    grafana_volumes = dict(v.split(":")[:2] for v in svc["grafana"]["volumes"])
    assert grafana_volumes["../grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = load(DASHBOARD_PROVIDERS)["providers"]
    assert grafana_volumes["../grafana/dashboards"] == provider["options"]["path"]
    home = svc["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "grafana" / "dashboards" / Path(home).name).is_file()


def test_mimir_loads_the_rules_and_keeps_the_documented_naming() -> None:
    mimir = load(DEPLOY / "mimir" / "mimir.yaml")
    volumes = dict(v.split(":")[:2] for v in services()["mimir"]["volumes"])
    tenant = "anonymous" if mimir["multitenancy_enabled"] is False else None
    assert volumes["../grafana/rules"] == f"{mimir['ruler_storage']['local']['directory']}/{tenant}"
    # docs/naming.md: the shipped Mimir adds Prometheus suffixes to OTLP names, keeps exemplars
    assert mimir["limits"]["otel_metric_suffixes_enabled"] is True
    assert mimir["limits"]["max_global_exemplars_per_user"] > 0
    rule_files = list((REPO / "grafana" / "rules").iterdir())
    assert all(p.suffix == ".yaml" and "groups" in load(p) for p in rule_files), "Mimir's ruler loads every file there"


def test_tempo_and_loki_configs_fit_their_major_versions() -> None:
    tempo = load(DEPLOY / "tempo" / "tempo.yaml")
    for removed in ("ingester", "ingester_client", "compactor", "metrics_generator_client"):
        assert removed not in tempo, f"Tempo 3 removed the {removed} block"
    for protocol in tempo["distributor"]["receivers"]["otlp"]["protocols"].values():
        assert protocol["endpoint"].startswith("0.0.0.0:")
    assert host_port(tempo["metrics_generator"]["storage"]["remote_write"][0]["url"]) == ("mimir", 9009)
    assert tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    loki = load(DEPLOY / "loki" / "loki.yaml")
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert loki["schema_config"]["configs"][0]["schema"] == "v13"


def test_images_match_between_compose_and_kubernetes() -> None:
    collector_image = services()["otelcol"]["image"]
    for path in KUBERNETES.glob("otelcol-*.values.yaml"):
        image = load(path)["image"]
        assert f"{image['repository']}:{image['tag']}" == collector_image, path.name


# ---------------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_the_demo() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith("#") and not line.startswith(" ")]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    assert 'pip install ".[demo]"' in text
    assert 'CMD ["otel-llm", "demo", "--host", "0.0.0.0"]' in text
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for item in source.split():
            assert (REPO / item).exists() or item == "README.md", f"COPY source {item} missing"
    assert "EXPOSE 9464" in text


# ---------------------------------------------------------------------- Kubernetes


def test_helm_values_use_the_collector_configs_of_the_repo() -> None:
    tiers = {
        "otelcol-agent.values.yaml": "collector-config/gateway/otelcol-agent.yaml",
        "otelcol-gateway.values.yaml": "collector-config/gateway/otelcol-loadbalancer.yaml",
        "otelcol-sampler.values.yaml": "collector-config/gateway/otelcol-sampler.yaml",
    }
    for values_name, config_path in tiers.items():
        path = KUBERNETES / values_name
        values = load(path)
        assert values["configMap"] == {"create": False, "existingName": values["configMap"]["existingName"]}
        assert f"--from-file=relay={config_path}" in path.read_text(), values_name
        assert f"create configmap {values['configMap']['existingName']}" in path.read_text()
        config_text = (REPO / config_path).read_text()
        for env in values.get("extraEnvs", []):
            assert f"${{env:{env['name']}:-" in config_text, f"{values_name}: {env['name']} is not read by {config_path}"
    sampler = load(KUBERNETES / "otelcol-sampler.values.yaml")
    gateway_env = {e["name"]: e["value"] for e in load(KUBERNETES / "otelcol-gateway.values.yaml")["extraEnvs"]}
    assert sampler["service"]["clusterIP"] == "None" or sampler["service"]["clusterIP"] is None
    assert gateway_env["SAMPLER_HEADLESS_SERVICE"].startswith(sampler["fullnameOverride"] + ".")
    agent_env = {e["name"]: e["value"] for e in load(KUBERNETES / "otelcol-agent.values.yaml")["extraEnvs"]}
    assert agent_env["GATEWAY_OTLP_ENDPOINT"].startswith(load(KUBERNETES / "otelcol-gateway.values.yaml")["fullnameOverride"] + ".")
    mimir = load(KUBERNETES / "mimir-distributed.values.yaml")
    assert mimir["mimir"]["structuredConfig"]["limits"]["otel_metric_suffixes_enabled"] is True
    loki = load(KUBERNETES / "loki.values.yaml")
    assert loki["loki"]["limits_config"]["allow_structured_metadata"] is True
    assert "Sizing" in (KUBERNETES / "README.md").read_text()
