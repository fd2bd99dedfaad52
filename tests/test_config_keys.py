"""Every key of the shipped configs that cannot run here exists in the upstream reference.

Loki, Tempo, Mimir, Alloy and the Helm charts are not available on these machines, so a
misspelled key would only show when a user deploys. Each file is checked key by key
against the reference of the version it targets, kept as key lists under
tests/data/upstream/ (source repository, path, commit and date inside each file; the
extraction script there is run by hand, never at test time):

| shipped file                                   | reference                                        |
|------------------------------------------------|--------------------------------------------------|
| deploy/loki/loki.yaml                          | Loki 3.7.4 configuration reference               |
| deploy/tempo/tempo.yaml                        | Tempo 3.0.3 manifest (+ configuration reference) |
|   distributor.receivers.otlp                   | collector v0.150.0 OTLP receiver (Tempo's go.mod)|
| deploy/mimir/mimir.yaml                        | Mimir config descriptor                          |
| deploy/kubernetes/loki.values.yaml             | loki chart 18.7.2 values (+ values.schema.json)  |
| deploy/kubernetes/tempo-distributed.values.yaml| tempo-distributed chart 3.3.0 values             |
| deploy/kubernetes/mimir-distributed.values.yaml| mimir-distributed chart values                   |
| deploy/kubernetes/otelcol-*.values.yaml        | opentelemetry-collector chart 0.170.0 (+ schema) |
| collector-config/alloy/*.alloy                 | Alloy component reference (arguments, blocks)    |

Chart values that the chart copies into the server's own config (Mimir's
`mimir.structuredConfig`, Tempo's `overrides`, Loki's `loki.limits_config`, ...) are
checked against that server's reference instead.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = REPO / "tests" / "data" / "upstream"
KUBERNETES = REPO / "deploy" / "kubernetes"
ALLOY_FILES = sorted((REPO / "collector-config" / "alloy").glob("*.alloy"))
FREE = "*"


def reference(name: str) -> dict:
    return json.loads((UPSTREAM / name).read_text())


# ------------------------------------------------------------------ the key-tree check
@dataclass
class Unknown:
    path: str  # dotted path of the unknown key
    closest: str | None  # closest valid key at that level, dotted

    def __str__(self) -> str:
        hint = f" (closest valid key: {self.closest})" if self.closest else ""
        return f"{self.path}{hint}"


@dataclass
class Ref:
    """A reference tree plus its named blocks."""

    root: object
    blocks: dict = field(default_factory=dict)

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self.blocks.get(node["$ref"], FREE)
        return node


def ref_of(name: str, *path: str) -> tuple[Ref, object]:
    data = reference(name)
    ref = Ref(data["root"], data.get("blocks", {}))
    node = ref.root
    for key in path:
        node = ref.resolve(node)[key]
    return ref, node


def unknown_keys(value, node, ref: Ref, path: tuple = (), grafts: dict | None = None) -> list[Unknown]:
    """Keys of `value` that the reference tree `node` does not have.

    grafts maps a path (tuple of keys) to (Ref, node): below it, another reference applies."""
    grafts = grafts or {}
    if path in grafts:
        ref, node = grafts[path]
    node = ref.resolve(node)
    if node == FREE:
        if not any(len(g) > len(path) and g[: len(path)] == path for g in grafts):
            return []
        node = {"<*>": FREE}  # free-form here, but a graft below applies another reference
    if isinstance(value, list):
        if isinstance(node, dict) and "[]" in node:
            return [u for i, item in enumerate(value) for u in unknown_keys(item, node["[]"], ref, path + (f"[{i}]",), grafts)]
        return []
    if not isinstance(value, dict):
        return []
    dotted = ".".join(path)
    if not isinstance(node, dict) or "[]" in node:
        # a scalar (or a list) in the reference, a mapping here: every key is unknown
        return [Unknown(f"{dotted}.{k}" if dotted else str(k), None) for k in value]
    found = []
    for key, sub in value.items():
        key = str(key)
        if key in node or path + (key,) in grafts:
            found += unknown_keys(sub, node.get(key, FREE), ref, path + (key,), grafts)
        elif "<*>" in node:
            found += unknown_keys(sub, node["<*>"], ref, path + (key,), grafts)
        else:
            valid = [k for k in node if not k.startswith("<")]
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            prefix = f"{dotted}." if dotted else ""
            found.append(Unknown(prefix + key, prefix + close[0] if close else None))
    return found


def report(file: str, unknown: list[Unknown]) -> str:
    return f"{file}: keys not in the upstream reference:\n" + "\n".join(f"  {u}" for u in unknown)


# ------------------------------------------------------------------ backend configs
BACKENDS = {
    "deploy/loki/loki.yaml": "loki.json",
    "deploy/tempo/tempo.yaml": "tempo.json",
    "deploy/mimir/mimir.yaml": "mimir.json",
}


def backend_grafts(file: str) -> dict:
    """Tempo's distributor embeds the collector's OTLP receiver (its own config schema)."""
    if file != "deploy/tempo/tempo.yaml":
        return {}
    return {("distributor", "receivers", "otlp"): ref_of("otlp-receiver.json")}


def check_backend(file: str, config: dict) -> list[Unknown]:
    ref, root = ref_of(BACKENDS[file])
    return unknown_keys(config, root, ref, grafts=backend_grafts(file))


@pytest.mark.parametrize("file", sorted(BACKENDS))
def test_backend_config_keys_exist_upstream(file):
    unknown = check_backend(file, yaml.safe_load((REPO / file).read_text()))
    assert not unknown, report(file, unknown)


# ------------------------------------------------------------------ Helm values
def chart_grafts() -> dict[str, dict]:
    """Per chart: values paths whose content the chart writes into the server's config."""
    loki, loki_root = ref_of("loki.json")
    tempo, tempo_root = ref_of("tempo.json")
    mimir, mimir_root = ref_of("mimir.json")

    def at(ref, root, *path):
        node = root
        for key in path:
            node = ref.resolve(node)[key]
        return ref, node

    return {
        "chart-loki.json": {
            ("loki", "structuredConfig"): (loki, loki_root),
            ("loki", "limits_config"): at(loki, loki_root, "limits_config"),
            ("loki", "schemaConfig"): at(loki, loki_root, "schema_config"),
            ("loki", "storage_config"): at(loki, loki_root, "storage_config"),
            ("loki", "query_range"): at(loki, loki_root, "query_range"),
            ("loki", "ingester"): at(loki, loki_root, "ingester"),
            ("loki", "pattern_ingester"): at(loki, loki_root, "pattern_ingester"),
            ("loki", "compactor"): at(loki, loki_root, "compactor"),
        },
        "chart-tempo-distributed.json": {
            ("tempo", "structuredConfig"): (tempo, tempo_root),
            ("overrides",): at(tempo, tempo_root, "overrides"),
            ("metricsGenerator", "config", "storage"): at(tempo, tempo_root, "metrics_generator", "storage"),
            ("metricsGenerator", "config", "processor"): at(tempo, tempo_root, "metrics_generator", "processor"),
            ("metricsGenerator", "config", "registry"): at(tempo, tempo_root, "metrics_generator", "registry"),
            ("storage", "trace", "s3"): at(tempo, tempo_root, "storage", "trace", "s3"),
            ("storage", "trace", "gcs"): at(tempo, tempo_root, "storage", "trace", "gcs"),
            ("storage", "trace", "azure"): at(tempo, tempo_root, "storage", "trace", "azure"),
            ("traces", "otlp", "grpc", "receiverConfig"): at(*ref_of("otlp-receiver.json"), "protocols", "grpc"),
            ("traces", "otlp", "http", "receiverConfig"): at(*ref_of("otlp-receiver.json"), "protocols", "http"),
        },
        "chart-mimir-distributed.json": {
            ("mimir", "structuredConfig"): (mimir, mimir_root),
        },
        # The collector chart's `config:` is a collector config: the shipped values set none
        # (each release mounts its file from collector-config/gateway/ through
        # configMap.existingName), and collector configs are checked against the collector
        # build by the collector tests. Its key tree here is free-form.
        "chart-opentelemetry-collector.json": {},
    }


VALUES = {
    "loki.values.yaml": "chart-loki.json",
    "tempo-distributed.values.yaml": "chart-tempo-distributed.json",
    "mimir-distributed.values.yaml": "chart-mimir-distributed.json",
    "otelcol-agent.values.yaml": "chart-opentelemetry-collector.json",
    "otelcol-gateway.values.yaml": "chart-opentelemetry-collector.json",
    "otelcol-sampler.values.yaml": "chart-opentelemetry-collector.json",
}


def test_every_values_file_has_a_reference():
    shipped = {p.name for p in KUBERNETES.glob("*.values.yaml")}
    assert shipped == set(VALUES), f"values files without a chart reference: {shipped - set(VALUES)}"


def check_values(name: str, values: dict) -> list[Unknown]:
    chart = VALUES[name]
    ref, root = ref_of(chart)
    return unknown_keys(values, root, ref, grafts=chart_grafts()[chart])


@pytest.mark.parametrize("name", sorted(VALUES))
def test_helm_values_keys_exist_in_chart(name):
    values = yaml.safe_load((KUBERNETES / name).read_text())
    unknown = check_values(name, values)
    assert not unknown, report(f"deploy/kubernetes/{name}", unknown)


@pytest.mark.parametrize("name", sorted(n for n, c in VALUES.items() if "schema" in reference(c)))
def test_helm_values_validate_against_chart_schema(name):
    """values.schema.json (reduced to key names, types and closedness) as Helm applies it."""
    schema = reference(VALUES[name])["schema"]
    values = yaml.safe_load((KUBERNETES / name).read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=lambda e: list(e.path))
    assert not errors, f"deploy/kubernetes/{name}:\n" + "\n".join(
        f"  {'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors
    )


def test_chart_versions_in_docs_match_references():
    """deploy/kubernetes/README.md names the chart versions the key lists come from."""
    readme = (KUBERNETES / "README.md").read_text()
    for chart in sorted(set(VALUES.values())):
        meta = reference(chart)["chart"]
        if chart == "chart-mimir-distributed.json":
            continue  # no released chart for the pinned Mimir in the snapshot; the README says so
        assert f"{meta['name']}` {meta['version']}" in readme or f"{meta['name']} {meta['version']}" in readme, (
            f"deploy/kubernetes/README.md does not pin {meta['name']} {meta['version']}"
        )


# ------------------------------------------------------------------ Tempo 3 write path
def test_tempo_distributed_has_a_kafka_write_path():
    """The chart refuses to render (validate.yaml) when block-builder or live-store is on
    without ingest.kafka.address; the block-builder/live-store replicas must equal the
    topic's partition count (UPGRADE.md of tempo-distributed 3.x)."""
    values = yaml.safe_load((KUBERNETES / "tempo-distributed.values.yaml").read_text())
    defaults = reference("chart-tempo-distributed.json")
    assert defaults["chart"]["version"].startswith("3.")
    kafka = values.get("ingest", {}).get("kafka", {})
    builder_on = values.get("blockBuilder", {}).get("enabled", True)
    live_on = values.get("liveStore", {}).get("enabled", True)
    assert builder_on and live_on, "Tempo 3 microservices store nothing without block-builder and live-store"
    assert kafka.get("address"), "ingest.kafka.address is required by tempo-distributed 3.x"
    partitions = kafka.get("auto_create_topic_default_partitions", 3)
    assert values.get("blockBuilder", {}).get("replicas", 3) == partitions
    assert values.get("liveStore", {}).get("replicas", 3) == partitions
    assert "ingester" not in values and "compactor" not in values, "removed in Tempo 3.0"


def test_compose_tempo_is_monolithic_without_kafka():
    """deploy/compose.yaml runs Tempo 3 as one process (target all), which needs no Kafka:
    no ingest block, no Tempo 2 ingester/compactor blocks."""
    config = yaml.safe_load((REPO / "deploy" / "tempo" / "tempo.yaml").read_text())
    assert config.get("target", "all") == "all"
    for removed in ("ingester", "compactor", "metrics_generator_client", "ingest"):
        assert removed not in config, removed


# ------------------------------------------------------------------ Alloy
@dataclass
class Block:
    name: str
    label: str | None
    attrs: list[str]
    blocks: list["Block"]
    line: int


TOKEN = re.compile(
    r"""(?P<comment>//[^\n]*|/\*.*?\*/)
      |(?P<string>"(?:\\.|[^"\\])*"|`[^`]*`)
      |(?P<newline>\n)
      |(?P<ws>[ \t\r]+)
      |(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      |(?P<number>[0-9][0-9_.eE+\-]*)
      |(?P<punct>==|!=|<=|>=|&&|\|\||[{}\[\]()=,.:+\-*/%<>!^?])""",
    re.S | re.X,
)


def alloy_tokens(text: str) -> list[tuple[str, str, int]]:
    tokens, pos, line = [], 0, 1
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise SyntaxError(f"line {line}: cannot read {text[pos:pos + 20]!r}")
        kind, value = m.lastgroup, m.group()
        if kind == "newline":
            tokens.append(("nl", value, line))
        elif kind not in ("ws", "comment"):
            tokens.append((kind, value, line))
        line += value.count("\n")
        pos = m.end()
    return tokens


def parse_alloy(text: str) -> list[Block]:
    """Alloy's syntax, enough for key names: `name = expr` attributes and
    `dotted.name "label" { ... }` blocks (expressions are skipped, brackets balanced)."""
    tokens = alloy_tokens(text)
    pos = 0

    def skip_nl():
        nonlocal pos
        while pos < len(tokens) and tokens[pos][0] == "nl":
            pos += 1

    def expression():
        nonlocal pos
        depth = 0
        while pos < len(tokens):
            kind, value, _ = tokens[pos]
            if depth == 0 and (kind == "nl" or value == "}"):
                return
            if value in "{[(" and kind == "punct":
                depth += 1
            elif value in "}])" and kind == "punct":
                depth -= 1
            pos += 1

    def body(closing: bool) -> tuple[list[str], list[Block]]:
        nonlocal pos
        attrs, blocks = [], []
        while True:
            skip_nl()
            if pos >= len(tokens):
                if closing:
                    raise SyntaxError("unclosed block")
                return attrs, blocks
            kind, value, line = tokens[pos]
            if value == "}" and kind == "punct":
                if not closing:
                    raise SyntaxError(f"line {line}: unexpected }}")
                pos += 1
                return attrs, blocks
            if kind != "ident":
                raise SyntaxError(f"line {line}: expected a name, got {value!r}")
            pos += 1
            nxt = tokens[pos]
            if nxt[1] == "=":
                pos += 1
                attrs.append(value)
                expression()
                continue
            label = None
            if nxt[0] == "string":
                label = nxt[1][1:-1]
                pos += 1
            if tokens[pos][1] != "{":
                raise SyntaxError(f"line {line}: expected {{ after {value}")
            pos += 1
            a, b = body(True)
            blocks.append(Block(value, label, a, b, line))

    attrs, blocks = body(False)
    if attrs:
        raise SyntaxError(f"attributes outside any component: {attrs}")
    return blocks


def alloy_unknown(blocks: list[Block], ref: dict) -> list[str]:
    problems = []
    for comp in blocks:
        where = f"line {comp.line}: {comp.name} {comp.label!r}"
        if comp.name not in ref["all_components"]:
            close = difflib.get_close_matches(comp.name, ref["all_components"], n=1, cutoff=0.6)
            problems.append(f"{where}: no such component" + (f" (closest: {close[0]})" if close else ""))
            continue
        if comp.name not in ref["components"]:
            problems.append(f"{where}: no reference extracted; add it to ALLOY_COMPONENTS in "
                            "tests/data/upstream/extract.py and re-run it")
            continue
        spec = ref["components"][comp.name]

        def walk(attrs, children, path: tuple, valid_args: list[str] | None):
            if valid_args is not None:
                for a in attrs:
                    if a not in valid_args:
                        close = difflib.get_close_matches(a, valid_args, n=1, cutoff=0.5)
                        problems.append(f"{where}: {' > '.join(path) or '(component)'}: unknown argument {a}"
                                        + (f" (closest: {close[0]})" if close else ""))
            for child in children:
                cpath = path + (child.name,)
                key = " > ".join(cpath)
                if key not in spec["blocks"]:
                    siblings = [k.split(" > ")[-1] for k in spec["blocks"] if k.count(" > ") == len(path)
                                and k.startswith(" > ".join(path))]
                    close = difflib.get_close_matches(child.name, siblings, n=1, cutoff=0.5)
                    problems.append(f"line {child.line}: {comp.name}: unknown block {key}"
                                    + (f" (closest: {' > '.join(path + (close[0],))})" if close else ""))
                    continue
                walk(child.attrs, child.blocks, cpath, spec["blocks"][key]["args"])

        walk(comp.attrs, comp.blocks, (), spec["arguments"])
    return problems


def test_alloy_files_exist():
    assert {p.name for p in ALLOY_FILES} >= {"config.alloy", "fallback-scrape.alloy"}


@pytest.mark.parametrize("path", ALLOY_FILES, ids=lambda p: p.name)
def test_alloy_components_arguments_and_blocks_exist(path):
    blocks = parse_alloy(path.read_text())
    assert blocks, f"{path.name}: no components parsed"
    problems = alloy_unknown(blocks, reference("alloy.json"))
    assert not problems, f"collector-config/alloy/{path.name}:\n  " + "\n  ".join(problems)


def test_alloy_parser_reads_nested_blocks_and_labels():
    blocks = parse_alloy('a.b "x" {\n  k = [1, {"y" = 2}]\n  c {\n    d = "}"\n  }\n}\n// c\nz.q "w" { }\n')
    assert [(b.name, b.label) for b in blocks] == [("a.b", "x"), ("z.q", "w")]
    assert blocks[0].attrs == ["k"] and blocks[0].blocks[0].name == "c" and blocks[0].blocks[0].attrs == ["d"]


# ------------------------------------------------------------------ the check can fail
def set_path(data: dict, path: list[str], new_key: str) -> dict:
    """A copy of data with the key at `path` renamed to new_key."""
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[new_key] = node.pop(path[-1])
    return data


TYPOS = [
    # (file, path of a real key, misspelling, expected dotted path, expected closest)
    ("deploy/loki/loki.yaml", ["limits_config", "allow_structured_metadata"], "allow_structured_metdata",
     "limits_config.allow_structured_metdata", "limits_config.allow_structured_metadata"),
    ("deploy/tempo/tempo.yaml", ["metrics_generator", "storage"], "storag",
     "metrics_generator.storag", "metrics_generator.storage"),
    ("deploy/tempo/tempo.yaml", ["overrides", "defaults", "metrics_generator", "processors"], "procesors",
     "overrides.defaults.metrics_generator.procesors", "overrides.defaults.metrics_generator.processors"),
    ("deploy/mimir/mimir.yaml", ["limits", "otel_metric_suffixes_enabled"], "otel_metric_suffix_enabled",
     "limits.otel_metric_suffix_enabled", "limits.otel_metric_suffixes_enabled"),
    # inside the OTLP receiver Tempo embeds
    ("deploy/tempo/tempo.yaml", ["distributor", "receivers", "otlp", "protocols", "grpc", "endpoint"], "endpiont",
     "distributor.receivers.otlp.protocols.grpc.endpiont", "distributor.receivers.otlp.protocols.grpc.endpoint"),
]


@pytest.mark.parametrize("file,path,typo,where,closest", TYPOS, ids=[t[2] for t in TYPOS])
def test_misspelled_backend_key_is_caught(file, path, typo, where, closest):
    config = set_path(yaml.safe_load((REPO / file).read_text()), path, typo)
    unknown = check_backend(file, config)
    assert [(u.path, u.closest) for u in unknown] == [(where, closest)]


VALUES_TYPOS = [
    ("tempo-distributed.values.yaml", ["metricsGenerator", "replicas"], "replica",
     "metricsGenerator.replica", "metricsGenerator.replicas"),
    # grafted: the chart copies `overrides` into Tempo's config, Tempo's reference applies
    ("tempo-distributed.values.yaml", ["overrides", "defaults", "metrics_generator"], "metrics_generators",
     "overrides.defaults.metrics_generators", "overrides.defaults.metrics_generator"),
    ("mimir-distributed.values.yaml", ["mimir", "structuredConfig", "limits", "max_global_exemplars_per_user"],
     "max_global_exemplar_per_user", "mimir.structuredConfig.limits.max_global_exemplar_per_user",
     "mimir.structuredConfig.limits.max_global_exemplars_per_user"),
    ("loki.values.yaml", ["loki", "limits_config", "volume_enabled"], "volume_enable",
     "loki.limits_config.volume_enable", "loki.limits_config.volume_enabled"),
    ("otelcol-agent.values.yaml", ["configMap", "existingName"], "existingname",
     "configMap.existingname", "configMap.existingName"),
]


@pytest.mark.parametrize("name,path,typo,where,closest", VALUES_TYPOS, ids=[t[2] for t in VALUES_TYPOS])
def test_misspelled_values_key_is_caught(name, path, typo, where, closest):
    values = set_path(yaml.safe_load((KUBERNETES / name).read_text()), path, typo)
    assert [(u.path, u.closest) for u in check_values(name, values)] == [(where, closest)]


def test_schema_rejects_a_misspelled_collector_chart_key():
    """The collector chart's schema is closed: jsonschema alone rejects an unknown key."""
    schema = reference("chart-opentelemetry-collector.json")["schema"]
    values = yaml.safe_load((KUBERNETES / "otelcol-gateway.values.yaml").read_text())
    values["autoscalling"] = values.pop("autoscaling")
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(values))
    assert any("autoscalling" in e.message for e in errors)


ALLOY_TYPOS = [
    ("decision_wait = ", "decision_wiat = ", "unknown argument decision_wiat (closest: decision_wait)"),
    ("string_attribute {", "string_atribute {", "unknown block policy > and > and_sub_policy > string_atribute"
     " (closest: policy > and > and_sub_policy > string_attribute)"),
    ('otelcol.processor.batch "default"', 'otelcol.processor.batching "default"', "no such component (closest: otelcol.processor.batch)"),
    ("insecure = true", "insecur = true", "client > tls: unknown argument insecur (closest: insecure)"),
]


@pytest.mark.parametrize("good,bad,message", ALLOY_TYPOS, ids=[t[1].split()[0] for t in ALLOY_TYPOS])
def test_misspelled_alloy_key_is_caught(good, bad, message):
    text = (REPO / "collector-config" / "alloy" / "config.alloy").read_text()
    assert good in text
    problems = alloy_unknown(parse_alloy(text.replace(good, bad, 1)), reference("alloy.json"))
    assert len(problems) == 1 and message in problems[0], problems


# ------------------------------------------------------------------ the references themselves
@pytest.mark.parametrize("name", sorted(p.name for p in UPSTREAM.glob("*.json")))
def test_reference_files_name_their_source(name):
    source = reference(name)["source"]
    assert source["repo"] and source["paths"] and re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert source["version"] and source["extracted"]


# ------------------------------------------------------------------ optional: a real render
HELM_CHART_CACHE = Path(os.environ.get("OTEL_LLM_HELM_CHARTS", Path.home() / ".cache" / "otel-llm" / "charts"))
RENDER = {
    "tempo-distributed.values.yaml": "tempo-distributed",
    "loki.values.yaml": "loki",
    "mimir-distributed.values.yaml": "mimir-distributed",
    "otelcol-agent.values.yaml": "opentelemetry-collector",
    "otelcol-gateway.values.yaml": "opentelemetry-collector",
    "otelcol-sampler.values.yaml": "opentelemetry-collector",
}


# The server config each chart renders into a ConfigMap: (data key, reference). Keys Mimir
# marks doc:"hidden" are not in its config descriptor; the chart sets one of them.
SERVER_CONFIG = {"tempo-distributed": ("tempo.yaml", "tempo.json"), "loki": ("config.yaml", "loki.json"),
                 "mimir-distributed": ("mimir.yaml", "mimir.json")}
HIDDEN = {"ingester.push_grpc_method_enabled"}


@pytest.mark.parametrize("name", sorted(RENDER))
def test_helm_render_with_cached_chart(name):
    """Renders the values with the real chart (helm-python-sdk, a Helm 4 engine) when a copy
    of the chart at the pinned version is in the local cache (OTEL_LLM_HELM_CHARTS/<chart>/,
    default ~/.cache/otel-llm/charts); skips otherwise. Nothing is downloaded. The server
    config the chart renders is checked against the same key lists."""
    chart_dir = HELM_CHART_CACHE / RENDER[name]
    if not (chart_dir / "Chart.yaml").exists():
        pytest.skip(f"no local copy of the {RENDER[name]} chart in {HELM_CHART_CACHE}")
    helm_python = pytest.importorskip("helm_python")
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    if meta["version"] != reference(VALUES[name])["chart"]["version"]:
        pytest.skip(f"cached {meta['name']} is {meta['version']}, not the pinned version")
    values = yaml.safe_load((KUBERNETES / name).read_text())
    rendered = helm_python.Chart.load(str(chart_dir)).render(values, name=name.split(".")[0], namespace="observability")
    docs = [d for path, text in rendered.items() if path.endswith((".yaml", ".yml"))
            for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    assert any(d.get("kind") in {"Deployment", "StatefulSet", "DaemonSet"} for d in docs), f"{name}: no workload rendered"
    if RENDER[name] in SERVER_CONFIG:
        key, ref_name = SERVER_CONFIG[RENDER[name]]
        configs = [yaml.safe_load(d["data"][key]) for d in docs if d.get("kind") == "ConfigMap" and key in (d.get("data") or {})]
        assert configs, f"{name}: no ConfigMap with {key}"
        ref, root = ref_of(ref_name)
        unknown = [u for u in unknown_keys(configs[0], root, ref) if u.path not in HIDDEN]
        assert not unknown, report(f"{RENDER[name]} rendered {key}", unknown)
