"""otelcol-llm, the collector distribution in collector-config/distribution/, against the shipped configs.

The distribution holds exactly the component types that the shipped collector configs
name (plus a small allowance for looking at data by hand), every collector module is
at one release, and the real binary's `validate` accepts every shipped config as it
is, with only the endpoint environment variables set. No config names a type by a
deprecated alias, and every shipped config, started unmodified, logs no "is deprecated"
line: `validate` says nothing about aliases (the warning comes when the service builds
its pipelines), so a future deprecation fails here only because the collector runs.

The binary comes from $OTELCOL_LLM_BIN (what .ci/run builds) or from build.sh (cached
by a hash of the module's sources, so this costs seconds once built). Without `go`
on the machine these tests skip; CI has go, so there they run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from tests.support.backends import NetNamespace, Relay, netns_supported
from tests.support.kube_api import KubeAPI
from tests.support.processes import stop, wait_collector_ready

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "collector-config"
DISTRIBUTION = CONFIG_DIR / "distribution"
BUILD_SH = DISTRIBUTION / "build.sh"
KUBERNETES = REPO / "deploy" / "kubernetes"

# Every collector config we ship, found by pattern so that a new one is covered without
# touching this file.
SHIPPED_CONFIGS = [CONFIG_DIR / "otelcol.yaml", *sorted((CONFIG_DIR / "gateway").glob("*.yaml"))]

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")

# Types the distribution may hold although no config names them: the debug exporter,
# for looking at data by hand (`--set` or a scratch config).
ALLOWANCE = {"exporters": {"debug"}}

# The collector release. Core's stable modules carry their own v1 numbers in the same
# release; contrib's stable modules too (k8sattributesprocessor went v1.0.0 in 0.161.0).
RELEASE = "v0.161.0"
CORE_STABLE = "v1.67.0"
CORE = "go.opentelemetry.io/collector"
CONTRIB = "github.com/open-telemetry/opentelemetry-collector-contrib/"
CONTRIB_STABLE = {CONTRIB + "processor/k8sattributesprocessor": "v1.0.0"}

ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def named_types(config: dict) -> dict[str, set[str]]:
    """The component types a collector config names, by kind (`otlp_http/mimir` -> `otlp_http`)."""
    return {kind: {component_type(cid) for cid in (config.get(kind) or {})} for kind in KINDS}


def kubernetes_config_blocks() -> list[tuple[str, dict]]:
    """The `config:` blocks of the collector chart values, where a values file has one."""
    blocks = []
    for path in sorted(KUBERNETES.glob("otelcol-*.values.yaml")):
        block = (yaml.safe_load(path.read_text()) or {}).get("config")
        if isinstance(block, dict):
            blocks.append((f"{path.relative_to(REPO)} config:", block))
    return blocks


def all_configs() -> list[tuple[str, dict]]:
    shipped = [(str(p.relative_to(REPO)), yaml.safe_load(p.read_text())) for p in SHIPPED_CONFIGS]
    return shipped + kubernetes_config_blocks()


def canonical(kind: str, type_: str, aliases: dict[str, dict[str, str]]) -> str:
    """The current name of a type: contrib 0.161 renamed e.g. spanmetrics to span_metrics (the old name still loads)."""
    return (aliases.get(kind) or {}).get(type_, type_)


def missing_components(configs: list[tuple[str, dict]], available: dict[str, set[str]], aliases: dict[str, dict[str, str]]) -> list[str]:
    """One line per component type that a config names and the distribution lacks (under that name or as an alias)."""
    missing = []
    for name, config in configs:
        for kind, types in named_types(config).items():
            missing += [f"{name}: {kind} {t!r}" for t in sorted(types) if canonical(kind, t, aliases) not in available.get(kind, set())]
    return missing


def deprecated_names(configs: list[tuple[str, dict]], aliases: dict[str, dict[str, str]]) -> list[str]:
    """One line per component id a config names by a deprecated alias, with the current name to use."""
    found = []
    for name, config in configs:
        for kind in KINDS:
            for cid in config.get(kind) or {}:
                current = (aliases.get(kind) or {}).get(component_type(cid))
                if current:
                    found.append(f"{name}: {kind} {cid!r} -> {current!r}")
    return found


# What the collector logs for a deprecated alias (service/internal/builders), or any other deprecation.
DEPRECATION = re.compile(r"^.*\bis deprecated\b.*$", re.M | re.I)


def deprecation_lines(log: str) -> list[str]:
    return DEPRECATION.findall(log)


def unused_components(configs: list[tuple[str, dict]], available: dict[str, set[str]], aliases: dict[str, dict[str, str]]) -> list[str]:
    """One line per component type of the distribution that no config names (the allowance aside)."""
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for _, config in configs:
        for kind, types in named_types(config).items():
            used[kind] |= {canonical(kind, t, aliases) for t in types}
    return [f"{kind} {t!r}" for kind in KINDS for t in sorted(available.get(kind, set()) - used[kind] - ALLOWANCE.get(kind, set()))]


def loopback_value(name: str, default: str | None) -> str:
    """A value for one ${env:NAME:-default}: endpoints point at loopback, in the form the default has."""
    if not default:
        return "test"
    parts = urlsplit(default)
    if parts.scheme in ("http", "https", "dns", "grpc"):
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, f"127.0.0.1{port}", parts.path, parts.query, parts.fragment))
    if re.fullmatch(r"[A-Za-z0-9.-]+:\d+", default):
        return "127.0.0.1:" + default.rsplit(":", 1)[1]
    if re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", default) and name.endswith(("_SERVICE", "_HOST", "_HOSTNAME")):
        return "localhost"
    return "test"


def endpoint_environment(path: Path) -> dict[str, str]:
    """Every ${env:...} a config reads, set to a loopback value (no default left to carry it)."""
    return {name: loopback_value(name, default) for name, default in ENV_REF.findall(path.read_text())}


# --- the binary ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def otelcol_llm() -> Path:
    given = os.environ.get("OTELCOL_LLM_BIN")
    if given:
        path = Path(given)
        assert path.is_file() and os.access(path, os.X_OK), f"OTELCOL_LLM_BIN={given} is not an executable file"
        return path
    if shutil.which("go") is None:
        pytest.skip("`go` is not installed: otelcol-llm (collector-config/distribution) cannot be built here")
    run = subprocess.run(["bash", str(BUILD_SH)], capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, f"build.sh failed ({run.returncode}):\n{run.stderr[-4000:]}"
    path = Path(run.stdout.strip().splitlines()[-1])
    assert path.is_absolute() and path.is_file(), f"build.sh's last line is not the binary: {run.stdout!r}"
    return path


def run_collector(binary: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # The configs' variables come only from `env`: none leaks in from the caller's environment.
    read = {name for p in SHIPPED_CONFIGS for name, _ in ENV_REF.findall(p.read_text())}
    base = {k: v for k, v in os.environ.items() if k not in read}
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120, env={**base, **(env or {})})


@pytest.fixture(scope="session")
def components(otelcol_llm: Path) -> dict:
    run = run_collector(otelcol_llm, "components")
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)


def available_types(components: dict) -> dict[str, set[str]]:
    return {kind: {c["name"] for c in components.get(kind) or []} for kind in KINDS}


@pytest.fixture(scope="session")
def aliases(otelcol_llm: Path) -> dict[str, dict[str, str]]:
    """`otelcol-llm aliases`: the deprecated names the build accepts, by kind, with their current names."""
    run = run_collector(otelcol_llm, "aliases")
    assert run.returncode == 0, run.stderr
    return {kind: dict(names or {}) for kind, names in yaml.safe_load(run.stdout).items()}


# --- offline: the checks themselves can fail ----------------------------------------------------


def test_a_config_naming_a_component_the_distribution_lacks_is_named() -> None:
    config = {"processors": {"batch": {}, "filter/drop_health": {}, "k8sattributes": {}}, "exporters": {"otlp_grpc/tempo": {}}}
    available = {"processors": {"batch", "k8s_attributes"}, "exporters": {"otlp_grpc"}}
    aliases = {"processors": {"k8sattributes": "k8s_attributes"}}
    assert missing_components([("x.yaml", config)], available, aliases) == ["x.yaml: processors 'filter'"]
    assert missing_components([("x.yaml", config)], available, {}) == ["x.yaml: processors 'filter'", "x.yaml: processors 'k8sattributes'"]


def test_a_component_no_config_uses_is_named() -> None:
    config = {"exporters": {"otlp/tempo": {}}}
    available = {"exporters": {"otlp_grpc", "debug", "kafka"}}
    assert unused_components([("x.yaml", config)], available, {"exporters": {"otlp": "otlp_grpc"}}) == ["exporters 'kafka'"]


def test_a_config_naming_a_deprecated_alias_is_named() -> None:
    config = {"processors": {"k8sattributes": {}, "batch": {}}, "connectors": {"spanmetrics/llm": {}}, "exporters": {"otlp_grpc/tempo": {}}}
    aliases = {"processors": {"k8sattributes": "k8s_attributes"}, "connectors": {"spanmetrics": "span_metrics"}, "exporters": {"otlp": "otlp_grpc"}}
    assert deprecated_names([("x.yaml", config)], aliases) == [
        "x.yaml: processors 'k8sattributes' -> 'k8s_attributes'", "x.yaml: connectors 'spanmetrics/llm' -> 'span_metrics'"]
    assert deprecated_names([("x.yaml", {"processors": {"k8s_attributes": {}}})], aliases) == []


def test_a_deprecation_warning_in_a_log_is_found() -> None:
    log = ('2026-11-29T20:29:24.607Z\tinfo\tservice@v0.161.0/service.go:233\tStarting otelcol-llm...\n'
           '2026-11-29T20:29:24.607Z\twarn\tbuilders/builders.go:40\t"k8sattributes" alias is deprecated; '
           'use "k8s_attributes" instead\t{"resource": {}}\n'
           '2026-11-29T20:29:24.700Z\tinfo\tservice@v0.161.0/service.go:259\tEverything is ready.\n')
    assert deprecation_lines(log) == [log.splitlines()[1]]
    assert deprecation_lines(log.replace("is deprecated", "is current")) == []


def test_endpoints_are_set_to_loopback_in_the_form_of_their_default() -> None:
    assert loopback_value("MIMIR_OTLP_ENDPOINT", "http://mimir:9009/otlp") == "http://127.0.0.1:9009/otlp"
    assert loopback_value("LOKI_OTLP_ENDPOINT", "http://loki-gateway/otlp") == "http://127.0.0.1/otlp"
    assert loopback_value("TEMPO_OTLP_ENDPOINT", "tempo:4317") == "127.0.0.1:4317"
    assert loopback_value("SAMPLER_HEADLESS_SERVICE", "otelcol-sampler-headless") == "localhost"


def test_every_shipped_config_is_found_and_reads_its_endpoints_from_the_environment() -> None:
    names = {p.name for p in SHIPPED_CONFIGS}
    assert {"otelcol.yaml", "otelcol-agent.yaml", "otelcol-loadbalancer.yaml", "otelcol-sampler.yaml"} <= names
    for path in SHIPPED_CONFIGS:
        env = endpoint_environment(path)
        assert any(name.endswith("_ENDPOINT") for name in env), f"{path.name} reads no endpoint from the environment"


def release_version_ok(module: str, version: str) -> bool:
    if module in CONTRIB_STABLE:
        return version == CONTRIB_STABLE[module]
    if module.startswith(CONTRIB):
        return version == RELEASE
    return version in (RELEASE, CORE_STABLE)


def test_collector_modules_are_at_one_release() -> None:
    gomod = (DISTRIBUTION / "go.mod").read_text()
    requires = dict(re.findall(rf"^\s*((?:{re.escape(CORE)}|{re.escape(CONTRIB)})\S*) (v\S+)", gomod, re.M))
    assert "go.opentelemetry.io/collector/otelcol" in requires, "go.mod requires no otelcol"
    assert len(requires) > 40
    wrong = {module: version for module, version in requires.items() if not release_version_ok(module, version)}
    assert not wrong, f"collector modules off release {RELEASE} (core stable {CORE_STABLE}): {wrong}"
    replaced = [m for m in re.findall(r"^\s*(\S+) => ", gomod, re.M) if m.startswith((CORE, CONTRIB))]
    assert not replaced, f"collector modules replaced, all must come from the one release: {replaced}"


def test_the_release_check_can_fail() -> None:
    assert not release_version_ok(CONTRIB + "processor/transformprocessor", "v0.160.0")
    assert not release_version_ok(CORE + "/otelcol", "v0.162.0")
    assert not release_version_ok(CONTRIB + "processor/k8sattributesprocessor", RELEASE)
    assert release_version_ok(CORE + "/confmap", CORE_STABLE)


def test_build_sh_names_a_missing_go(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash
    run = subprocess.run([bash, str(BUILD_SH), str(tmp_path)], capture_output=True, text=True, env={"PATH": str(tmp_path), "HOME": str(tmp_path)}, timeout=30)
    assert run.returncode != 0
    assert "'go' is not on PATH" in run.stderr
    assert not list(tmp_path.iterdir()), "build.sh wrote into OUTDIR without go"


# --- the real binary ----------------------------------------------------------------------------


@pytest.mark.slow
def test_every_component_a_config_names_is_in_the_distribution(components: dict, aliases: dict) -> None:
    missing = missing_components(all_configs(), available_types(components), aliases)
    assert not missing, "otelcol-llm lacks components the configs name (add them to collector-config/distribution/components.go):\n" + "\n".join(missing)


@pytest.mark.slow
def test_the_distribution_has_nothing_the_configs_do_not_use(components: dict, aliases: dict) -> None:
    unused = unused_components(all_configs(), available_types(components), aliases)
    assert not unused, "otelcol-llm holds components no shipped config names (remove them from components.go or add to ALLOWANCE):\n" + "\n".join(unused)


@pytest.mark.slow
def test_no_config_names_a_component_by_a_deprecated_alias(aliases: dict) -> None:
    found = deprecated_names(all_configs(), aliases)
    assert not found, "configs name deprecated component types (the collector warns at start; use the current names):\n" + "\n".join(found)


@pytest.mark.slow
def test_aliases_stand_for_components_of_the_distribution(components: dict, aliases: dict) -> None:
    available = available_types(components)
    assert set(aliases) == set(KINDS)
    assert aliases["exporters"].get("otlp") == "otlp_grpc", aliases
    for kind, names in aliases.items():
        for alias, current in names.items():
            assert current in available[kind], f"alias {kind} {alias!r} stands for {current!r}, which the distribution lacks"
            assert alias not in available[kind]


@pytest.mark.slow
def test_the_distribution_reports_the_release_and_modules_of_go_mod(components: dict) -> None:
    assert components["buildinfo"]["command"] == "otelcol-llm"
    assert components["buildinfo"]["version"] == RELEASE.lstrip("v")
    gomod = (DISTRIBUTION / "go.mod").read_text()
    listed = [c["module"] for kind in KINDS for c in components.get(kind) or []]
    listed += [p["module"] for p in components.get("providers") or []]
    assert len(listed) >= 16
    for module in listed:
        path, version = module.split(" ")
        assert re.search(rf"^\s*{re.escape(path)} {re.escape(version)}( //.*)?$", gomod, re.M), f"components.go says {module}; go.mod does not require that"


# Shipped configs the real collector rejects today: the error validate gives, and why. Such a
# config must keep failing with exactly that error (then the test is an expected failure); once
# it is fixed the test fails until its entry here goes.
KNOWN_BROKEN: dict[str, tuple[str, str]] = {}  # none today (otelcol-loadbalancer.yaml's dns port was an int)


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_validate_accepts_the_shipped_config_unmodified(otelcol_llm: Path, path: Path) -> None:
    env = endpoint_environment(path)
    run = run_collector(otelcol_llm, "validate", f"--config={path}", env=env)
    output = run.stderr + run.stdout
    if path.name in KNOWN_BROKEN:
        error, reason = KNOWN_BROKEN[path.name]
        assert run.returncode != 0, f"{path.name} validates now: remove it from KNOWN_BROKEN"
        assert error in output, f"{path.name} fails, but not as known:\n{output}"
        pytest.xfail(reason)
    assert run.returncode == 0, f"otelcol-llm validate --config={path.relative_to(REPO)} with {env}:\n{output}"


@pytest.mark.slow
def test_validate_names_a_misspelled_key(otelcol_llm: Path, tmp_path: Path) -> None:
    path = CONFIG_DIR / "otelcol.yaml"
    text = path.read_text()
    assert "    decision_wait: 10s\n" in text
    bad = tmp_path / "otelcol.yaml"
    bad.write_text(text.replace("    decision_wait: 10s\n", "    decision_wiat: 10s\n", 1))
    run = run_collector(otelcol_llm, "validate", f"--config={bad}", env=endpoint_environment(path))
    assert run.returncode != 0, "validate accepted a misspelled key"
    assert "decision_wiat" in run.stderr, run.stderr
    assert "tail_sampling" in run.stderr, run.stderr


@pytest.mark.slow
def test_validate_names_a_component_the_distribution_lacks(otelcol_llm: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((CONFIG_DIR / "otelcol.yaml").read_text())
    config["processors"]["filter/health"] = {}
    config["service"]["pipelines"]["traces"]["processors"].insert(0, "filter/health")
    bad = tmp_path / "otelcol.yaml"
    bad.write_text(yaml.safe_dump(config))
    run = run_collector(otelcol_llm, "validate", f"--config={bad}", env=endpoint_environment(CONFIG_DIR / "otelcol.yaml"))
    assert run.returncode != 0
    assert "filter" in run.stderr, run.stderr


SERVICE_ACCOUNT = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is a symlink to /run


def started_log(binary: Path, path: Path, aliases: dict[str, dict[str, str]], timeout: float = 60.0) -> str:
    """Runs the config at `path` until the collector logs "Everything is ready", then stops it; returns its log.

    It runs in a network namespace of its own, where the configs' fixed ports (4317, 4318, 13133, 8888) are
    free. A config with k8s_attributes gets what a pod gets (tests/test_pipeline_gateway.py does the same):
    KUBERNETES_SERVICE_HOST/PORT of a fake API (tests/support/kube_api.py, no pods) and the service-account
    files, on a tmpfs over /run in its mount namespace only. Endpoints point at loopback, where nothing
    answers: exporters start anyway."""
    why = netns_supported()
    if why:
        pytest.skip(f"the shipped configs bind fixed ports, so each starts in a network namespace: {why}")
    config = yaml.safe_load(path.read_text())
    needs_kube = any(canonical("processors", t, aliases) == "k8s_attributes" for t in named_types(config)["processors"])
    tmp = Path(tempfile.mkdtemp(prefix="otel-llm-start-"))
    env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    env |= endpoint_environment(path)
    kube, relay, setup = None, None, []
    if needs_kube:
        kube = KubeAPI([]).start()
        account = kube.service_account(tmp / "serviceaccount", namespace="otel")
        setup = ["mount -t tmpfs tmpfs /run", f"mkdir -p {SERVICE_ACCOUNT}",
                 f"cp {account}/token {account}/ca.crt {account}/namespace {SERVICE_ACCOUNT}/"]
        env |= {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kube.port)}
    log = tmp / "otelcol.log"
    try:
        with NetNamespace("start", setup=setup) as namespace:
            if kube is not None:
                relay = Relay(namespace.net, ("127.0.0.1", kube.port), None, ("127.0.0.1", kube.port)).start()
            with open(log, "wb") as out:
                process = namespace.popen([str(binary), f"--config={path}"], env=env, cwd=tmp, stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                wait_collector_ready(log, process, timeout)
            finally:
                stop(process)
        return log.read_text(errors="replace")
    finally:
        if relay is not None:
            relay.stop()
        if kube is not None:
            kube.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_the_shipped_config_starts_and_logs_no_deprecation(otelcol_llm: Path, aliases: dict, path: Path) -> None:
    if path.name in KNOWN_BROKEN:
        pytest.skip(f"{path.name} does not load: {KNOWN_BROKEN[path.name][1]}")
    log = started_log(otelcol_llm, path, aliases)
    found = deprecation_lines(log)
    assert not found, f"{path.relative_to(REPO)} started with deprecation warnings:\n" + "\n".join(found)


@pytest.mark.slow
def test_a_config_naming_a_deprecated_alias_starts_with_a_warning(otelcol_llm: Path, aliases: dict, tmp_path: Path) -> None:
    """The check above can fail: otelcol.yaml with its connector under the old name spanmetrics logs the warning."""
    assert aliases["connectors"].get("spanmetrics") == "span_metrics", aliases
    text = (CONFIG_DIR / "otelcol.yaml").read_text()
    assert re.search(r"\bspan_metrics\b", text)
    old = tmp_path / "otelcol.yaml"
    old.write_text(re.sub(r"\bspan_metrics\b", "spanmetrics", text))
    found = deprecation_lines(started_log(otelcol_llm, old, aliases))
    assert found and all('"spanmetrics" alias is deprecated; use "span_metrics" instead' in line for line in found), found
