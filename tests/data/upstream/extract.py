"""Extract the key lists in this folder from upstream reference material.

Run by hand, never by the tests: it reads git snapshots of the upstream repositories
(the search tool's `fetch` puts them under /work/.mirror/OWNER+NAME/repo) and writes one
JSON file per reference. Only key names (and, for Helm charts with a values.schema.json,
the schema reduced to key names, types and closedness) are kept, each file with its
source repository, path, commit and date. Nothing upstream is copied.

    python tests/data/upstream/extract.py [--mirror /work/.mirror]

Tree format shared by every file (read by tests/test_config_keys.py):

    null            a scalar: no keys below it
    "*"             free-form: anything below is accepted (the reference does not list it)
    {"k": node}     a mapping with these keys
    {"$ref": "b"}   the named block b of the same file ("blocks")
    {"[]": node}    a list whose items are `node`
    {"<*>": node}   a map with arbitrary keys whose values are `node`
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parent
FREE = "*"

# (repo dir under the mirror, git revision, what the revision stands for)
LOKI = ("grafana+loki", "v3.7.4", "Loki 3.7.4")
TEMPO = ("grafana+tempo", "v3.0.3", "Tempo 3.0.3")
# grafana/mimir is over the snapshot size limit; this mirror of it stops at main of
# 2026-02-16 (after mimir-3.0.2, chart 6.1.0-weekly.381): the newest Mimir reachable here.
MIMIR = ("scm-repo-mirror+grafana_mimir", "a4f0dd536c48544d6c1db6b4ff51de909754a848", "Mimir main after 3.0.2 (r381)")
TEMPO_CHART = ("grafana-community+helm-charts", "tempo-distributed-3.3.0", "tempo-distributed 3.3.0 (Tempo 3.0.3)")
LOKI_CHART = ("grafana-community+helm-charts", "loki-18.7.2", "loki 18.7.2 (Loki 3.7.4)")
OTELCOL_CHART = ("open-telemetry+opentelemetry-helm-charts", "opentelemetry-collector-0.170.0", "opentelemetry-collector 0.170.0 (collector 0.158.0)")
# grafana/alloy v1.19.2 is not in the snapshot; v1.19.0-rc.3 is its newest v1.19 tag.
ALLOY = ("grafana+alloy", "v1.19.0-rc.3", "Alloy v1.19.0-rc.3 (nearest to the pinned v1.19.2)")
ALLOY_COMPONENTS = [
    "otelcol.receiver.otlp",
    "otelcol.processor.memory_limiter",
    "otelcol.processor.resourcedetection",
    "otelcol.processor.transform",
    "otelcol.processor.tail_sampling",
    "otelcol.processor.batch",
    "otelcol.connector.spanmetrics",
    "otelcol.exporter.otlp",
    "otelcol.exporter.otlphttp",
    "prometheus.exporter.self",
    "prometheus.scrape",
    "prometheus.remote_write",
]
# The OTLP receiver Tempo 3.0.3 embeds (its go.mod: go.opentelemetry.io/collector/receiver/otlpreceiver v0.150.0)
OTLP_RECEIVER = ("open-telemetry+opentelemetry-collector", "v0.150.0", "collector core v0.150.0 (as in Tempo 3.0.3's go.mod)")
UPSTREAM_NAMES = {
    "open-telemetry+opentelemetry-collector": "open-telemetry/opentelemetry-collector",
    "grafana+loki": "grafana/loki",
    "grafana+tempo": "grafana/tempo",
    "scm-repo-mirror+grafana_mimir": "grafana/mimir (via the mirror scm-repo-mirror/grafana_mimir)",
    "grafana-community+helm-charts": "grafana-community/helm-charts",
    "open-telemetry+opentelemetry-helm-charts": "open-telemetry/opentelemetry-helm-charts",
    "grafana+alloy": "grafana/alloy",
}


class Repo:
    def __init__(self, mirror: Path, spec: tuple[str, str, str]):
        self.dir = mirror / spec[0] / "repo"
        self.rev, self.label = spec[1], spec[2]
        self.name = UPSTREAM_NAMES[spec[0]]

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.dir), *args], check=True, capture_output=True, text=True).stdout

    def show(self, path: str) -> str:
        return self.git("show", f"{self.rev}:{path}")

    def ls(self, path: str) -> list[str]:
        return self.git("ls-tree", "-r", "--name-only", self.rev, path).split()

    def source(self, *paths: str) -> dict:
        commit, date = self.git("log", "-1", "--format=%H %cI", self.rev).split()
        return {"repo": self.name, "paths": list(paths), "ref": self.rev, "version": self.label,
                "commit": commit, "commit_date": date, "extracted": dt.date.today().isoformat()}


def merge(a, b):
    """Union of two trees (b's keys added to a)."""
    if a == FREE or b == FREE:
        return FREE
    if a is None:
        return b
    if b is None:
        return a
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if k in out else v
    return out


# ---------------------------------------------------------------- Loki/Tempo doc format
FIELD = re.compile(r"^(\s*)\[([A-Za-z0-9_.\-]+):\s*(.*)$")
INLINE = re.compile(r"^(\s*)\[<([a-z0-9_]+)>\]")  # a block squashed into its parent
BARE = re.compile(r"^(\s*)([A-Za-z0-9_.\-]+):\s*(.*)$")


def type_node(typ: str, blocks: set[str]):
    """`<...>` type text of a `[name: <type> | default]` line -> tree node."""
    m = re.match(r"<([^>|]*)>?", typ.strip())
    t = m.group(1).strip() if m else ""
    if t in blocks:
        return {"$ref": t}
    lm = re.fullmatch(r"list of (\w+?)s?", t)
    if lm and lm.group(1) in blocks:
        return {"[]": {"$ref": lm.group(1)}}
    mm = re.fullmatch(r"map of string to (\w+)", t)
    if mm:
        return {"<*>": {"$ref": mm.group(1)} if mm.group(1) in blocks else FREE}
    if t in {"list of strings", "list of durations"}:
        return None
    if t in {"map", "list", "object"} or t.startswith(("map of", "list of", "map[")) or t.endswith("...") or t[:1].isupper():
        return FREE  # a map, a list of a Go type, or a type the doc does not expand
    return None  # string, int, duration, boolean, float, url, time, ...


def parse_bracket_yaml(text: str, blocks: set[str]) -> dict:
    """The documented pseudo-YAML: `[key: <type> | default = x]` fields, bare `key:` blocks."""
    root: dict = {}
    stack: list[tuple[int, dict]] = [(-1, root)]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if raw.lstrip().startswith("#") else raw.rstrip()
        if not line.strip():
            continue
        inline = INLINE.match(line)
        if inline:
            while stack[-1][0] >= len(inline.group(1)):
                stack.pop()
            stack[-1][1].setdefault("$inline", []).append(inline.group(2))
            continue
        m = FIELD.match(line)
        bare = None if m else BARE.match(line)
        if not m and not bare:
            continue
        indent = len((m or bare).group(1))
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if m:
            key, node = m.group(2), type_node(m.group(3), blocks)
            parent[key] = merge(parent.get(key), node) if key in parent else node
        else:
            key, rest = bare.group(2), bare.group(3).strip()
            if rest and not rest.startswith("#"):
                parent.setdefault(key, None)  # an example value: a scalar key
                continue
            child = parent.get(key)
            if not isinstance(child, dict) or "$ref" in child or "[]" in child:
                child = {}
                parent[key] = child
            stack.append((indent, child))
    return root


def code_blocks(md: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", md, flags=re.S | re.M)


def loki(mirror: Path) -> dict:
    repo = Repo(mirror, LOKI)
    path = "docs/sources/shared/configuration.md"
    md = repo.show(path)
    sections = re.split(r"^### ", md, flags=re.M)
    names = {s.split("\n", 1)[0].strip() for s in sections}
    block_names = {n for n in names if re.fullmatch(r"[a-z0-9_]+", n)}
    blocks, root = {}, None
    for s in sections:
        title = s.split("\n", 1)[0].strip()
        cbs = code_blocks(s)
        if title.startswith("Supported contents"):
            root = parse_bracket_yaml(cbs[0], block_names)
        elif title in block_names and cbs:
            blocks[title] = parse_bracket_yaml(cbs[0], block_names)
    root, blocks = expand_inline(root, blocks), {k: expand_inline(v, blocks) for k, v in blocks.items()}
    return {"source": repo.source(path), "root": root, "blocks": blocks}


def expand_inline(tree, blocks):
    """Copy the keys of squashed blocks (`[<name>]` lines) into their parent."""
    if not isinstance(tree, dict):
        return tree
    out = {k: expand_inline(v, blocks) for k, v in tree.items() if k != "$inline"}
    for name in tree.get("$inline", []):
        out = merge(out, expand_inline(blocks.get(name, {}), blocks))
    return out


# ---------------------------------------------------------------- Tempo
def yaml_tree(value):
    """A YAML document of defaults -> tree; empty maps/lists and nulls are free-form."""
    if isinstance(value, dict):
        return {str(k): yaml_tree(v) for k, v in value.items()} if value else FREE
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            items = None
            for v in value:
                items = merge(items, yaml_tree(v)) if items is not None else yaml_tree(v)
            return {"[]": items}
        return None if value else FREE
    return FREE if value is None else None


def tempo(mirror: Path) -> dict:
    repo = Repo(mirror, TEMPO)
    manifest_path = "docs/sources/tempo/configuration/manifest.md"
    config_path = "docs/sources/tempo/configuration/_index.md"
    manifest = yaml.safe_load(code_blocks(repo.show(manifest_path))[0])
    root = yaml_tree(manifest)
    # The manifest omits keys whose default is empty (overrides' processors, ...): add the
    # keys the configuration reference documents, only under top-level keys the manifest has,
    # plus the documented root-level options.
    documented: dict = {}
    for cb in code_blocks(repo.show(config_path)):
        documented = merge(documented, parse_bracket_yaml(cb, set()))
    root_options = {"multitenancy_enabled", "http_api_prefix", "stream_over_http_enabled", "span_profiling"}
    for key, node in documented.items():
        if key in root:
            root[key] = merge(root[key], node) if isinstance(root[key], dict) and isinstance(node, dict) else root[key]
        elif key in root_options:
            root[key] = node
    return {"source": repo.source(manifest_path, config_path), "root": root, "blocks": {}}


# ---------------------------------------------------------------- Mimir
def mimir_node(entry: dict):
    if entry["kind"] == "block":
        return {e["name"]: mimir_node(e) for e in entry.get("blockEntries") or []}
    t = entry.get("fieldType") or ""
    if t.startswith("map of"):
        return {"<*>": None}
    if t in {"slice"} or t.endswith("..."):
        return FREE
    return None


def mimir(mirror: Path) -> dict:
    repo = Repo(mirror, MIMIR)
    path = "cmd/mimir/config-descriptor.json"
    root = mimir_node(json.loads(repo.show(path)))
    return {"source": repo.source(path), "root": root, "blocks": {}}


# ---------------------------------------------------------------- Helm charts
def reduce(s):
    """values.schema.json reduced to key names, types, enums and closedness."""
    if isinstance(s, list):
        return [reduce(v) for v in s]
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k in {"properties", "patternProperties", "definitions", "$defs"}:
            out[k] = {name: reduce(sub) for name, sub in v.items()}
        elif k in {"items", "additionalProperties", "anyOf", "oneOf", "allOf"}:
            out[k] = reduce(v)
        elif k in {"type", "enum", "$ref", "$schema"}:
            # not "required": Helm validates the values merged with the chart's defaults
            out[k] = v
    return out


def schema_tree(s, defs, seen=()):
    """Keys a (reduced) JSON schema names, as a tree: '<closed>' marks additionalProperties
    false, '<*>' an explicit map (patternProperties or an additionalProperties schema)."""
    if not isinstance(s, dict):
        return FREE
    if "$ref" in s:
        name = s["$ref"].rsplit("/", 1)[-1]
        return schema_tree(defs[name], defs, seen + (name,)) if name in defs and name not in seen else FREE
    tree: dict = {}
    for k in ("anyOf", "oneOf", "allOf"):
        for sub in s.get(k, []):
            t = schema_tree(sub, defs, seen)
            if isinstance(t, dict):
                tree = {**tree, **t}
    for name, sub in s.get("properties", {}).items():
        tree[name] = schema_tree(sub, defs, seen)
    extra = [v for v in s.get("patternProperties", {}).values()]
    if isinstance(s.get("additionalProperties"), dict):
        extra.append(s["additionalProperties"])
    if extra:
        tree["<*>"] = schema_tree(extra[0], defs, seen) if len(extra) == 1 else FREE
    if s.get("additionalProperties") is False and not s.get("patternProperties"):
        tree["<closed>"] = True
    if s.get("type") == "array" and isinstance(s.get("items"), dict):
        t = schema_tree(s["items"], defs, seen)
        return {"[]": t} if isinstance(t, dict) else FREE
    if tree:
        return tree
    types = s.get("type")
    types = types if isinstance(types, list) else [types]
    return None if types and all(t in {"string", "integer", "number", "boolean", "null"} for t in types) else FREE


def schema_clean(s):
    """A schema subtree as a key tree: closed objects and explicit maps keep their keys,
    other objects (open to any key) are free-form."""
    if not isinstance(s, dict):
        return s
    if "[]" in s:
        return {"[]": schema_clean(s["[]"])}
    if s.get("<closed>") or "<*>" in s:
        return {k: schema_clean(v) for k, v in s.items() if k != "<closed>"}
    return FREE


def merge_schema(v, s):
    """values.yaml's tree, completed by the schema's: values.yaml decides which maps are
    open unless the schema closes them; keys only the schema names are added."""
    if not isinstance(s, dict) or "[]" in s:
        return v
    if isinstance(v, dict) and "[]" not in v and "$ref" not in v:
        out = dict(v)
        for k, sub in s.items():
            if k == "<closed>":
                continue
            out[k] = merge_schema(v[k], sub) if k in v else schema_clean(sub)
        return out
    if v in (FREE, None):
        return schema_clean(s)
    return v


def add_path(tree, keys: list[str]) -> None:
    node = tree
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or "[]" in node or "$ref" in node:
            return
        if key not in node:
            node[key] = FREE if i == len(keys) - 1 else {}
        node = node[key]


def chart(mirror: Path, spec, chart_dir: str) -> dict:
    repo = Repo(mirror, spec)
    files = repo.ls(chart_dir)
    values_path = f"{chart_dir}/values.yaml"
    tree = yaml_tree(yaml.safe_load(repo.show(values_path)))
    # Keys the templates read that values.yaml only mentions in comments (loki's
    # storage.bucketNames, tempo-distributed's storage.trace.s3, ...).
    templates = [p for p in files if p.startswith(f"{chart_dir}/templates/") and p.endswith((".yaml", ".tpl", ".txt"))]
    for path in templates:
        text = repo.show(path)
        for ref in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            add_path(tree, ref.strip(".").split("."))
        # dig "k1" "k2" <default> .Values.x
        for args, base in re.findall(r"\bdig\s+((?:\"[^\"]*\"\s+)+\S+?)\s+\(?\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)*)", text):
            tokens = re.findall(r'"[^"]*"|\S+', args)[:-1]
            keys = [t.strip('"') for t in tokens if t.startswith('"')]
            add_path(tree, [k for k in base.strip(".").split(".") if k] + keys)
    out = {"root": tree, "blocks": {}}
    paths = [values_path]
    schema_path = f"{chart_dir}/values.schema.json"
    if schema_path in files:
        paths.append(schema_path)
        schema = reduce(json.loads(repo.show(schema_path)))
        out["schema"] = schema
        defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
        out["root"] = merge_schema(tree, schema_tree(schema, defs))
    out["source"] = repo.source(*paths)
    chart_yaml = yaml.safe_load(repo.show(f"{chart_dir}/Chart.yaml"))
    out["chart"] = {"name": chart_yaml["name"], "version": chart_yaml["version"], "appVersion": chart_yaml.get("appVersion")}
    return {"source": out.pop("source"), **out}


# ---------------------------------------------------------------- OTLP receiver (inside Tempo)
def collector_schema_tree(repo: Repo, ref: str, file: str, paths: list[str], depth: int = 0):
    """A collector config.schema.yaml definition as a closed key tree (collector configs
    reject unknown keys), following $ref across the config/* modules."""
    ref = ref.removeprefix("go.opentelemetry.io/collector/").lstrip("/")
    if "." in ref:
        module, name = ref.rsplit(".", 1)
        file = f"{module}/config.schema.yaml"
    else:
        name = ref
    if depth > 8:
        return FREE
    try:
        schema = yaml.safe_load(repo.show(file))
    except subprocess.CalledProcessError:
        return FREE
    if file not in paths:
        paths.append(file)
    return _collector_node(repo, schema.get("$defs", {}).get(name, {}), file, paths, depth)


def _collector_node(repo, node, file, paths, depth):
    if "$ref" in node:
        return collector_schema_tree(repo, node["$ref"], file, paths, depth + 1)
    tree: dict = {}
    for sub in node.get("allOf", []):
        t = _collector_node(repo, sub, file, paths, depth + 1)
        if t == FREE:
            return FREE
        tree.update(t or {})
    for key, sub in (node.get("properties") or {}).items():
        tree[key] = _collector_node(repo, sub, file, paths, depth + 1)
    if tree:
        return tree
    return None if node.get("type") in {"string", "integer", "number", "boolean", "array"} else FREE


def otlp_receiver(mirror: Path) -> dict:
    repo = Repo(mirror, OTLP_RECEIVER)
    config_go = "receiver/otlpreceiver/config.go"
    text = repo.show(config_go)
    # the receiver's own keys, from its mapstructure tags
    tags = dict(re.findall(r"^[ \t]*(\w+)[ \t]+[^`\n]*`mapstructure:\"([a-z_]+)", text, flags=re.M))
    assert {"GRPC", "HTTP", "Protocols", "TracesURLPath"} <= set(tags), tags
    paths = [config_go]
    grpc = collector_schema_tree(repo, "config/configgrpc.server_config", "", paths)
    http = collector_schema_tree(repo, "config/confighttp.server_config", "", paths)
    http = {**http, **{tags[k]: None for k in ("TracesURLPath", "MetricsURLPath", "LogsURLPath")}}
    root = {tags["Protocols"]: {tags["GRPC"]: grpc, tags["HTTP"]: http}}
    return {"source": repo.source(*paths), "root": root, "blocks": {}}


# ---------------------------------------------------------------- Alloy
def md_table_names(text: str) -> list[str]:
    """First-column `names` of markdown tables whose header starts with 'Name'."""
    names, in_table = [], False
    for line in text.splitlines():
        if re.match(r"^\|\s*(Name|Attribute|Argument)\s*\|", line):
            in_table = True
            continue
        if in_table and line.startswith("|"):
            m = re.match(r"^\|\s*`([A-Za-z0-9_.]+)`", line)
            if m:
                names.append(m.group(1))
            continue
        in_table = False
    return names


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9_\-]", "", title.strip().lower().replace("`", "").replace(" ", "-"))


def alloy_section_args(repo: Repo, text: str) -> list[str]:
    names = md_table_names(text)
    for inc in re.findall(r'docs/shared lookup="([^"]+)"', text):
        try:
            shared = repo.show(f"docs/sources/shared/{inc}")
        except subprocess.CalledProcessError:
            continue
        names += md_table_names(shared)
    return sorted(set(names))


def block_rows(text: str) -> list[tuple[list[str], str]]:
    """Rows of the markdown tables headed 'Block': (names along the path, link anchor)."""
    rows, in_table = [], False
    for line in text.splitlines():
        if re.match(r"^\|\s*Block\s*\|", line):
            in_table = True
            continue
        if not (in_table and line.startswith("|")):
            in_table = False
            continue
        cell = line.split("|")[1]
        names = re.findall(r"`([A-Za-z0-9_.]+)`", cell)
        if not names:
            continue
        link = re.search(r"\]\(#([A-Za-z0-9_\-]+)\)|\]\[([^\]]+)\]", cell)
        rows.append((names, (link.group(1) or link.group(2)) if link else names[-1]))
    return rows


def alloy_component(repo: Repo, path: str) -> dict:
    md = repo.show(path)
    refdefs = dict(re.findall(r"^\[([^\]]+)\]: #([A-Za-z0-9_\-]+)\s*$", md, flags=re.M))
    parts = re.split(r"^(#{2,4}) (.+)$", md, flags=re.M)
    sections: dict[str, str] = {}
    top: dict[str, str] = {}
    for i in range(1, len(parts), 3):
        level, title, body = parts[i], parts[i + 1], parts[i + 2]
        if level == "##":
            top[title.strip()] = body
        else:
            sections.setdefault(slug(title), body)

    def args_of(anchor: str, seen: tuple = ()) -> list[str] | None:
        body = sections.get(refdefs.get(anchor, anchor))
        if body is None:
            return None  # no section: arguments unknown, not checked
        names = alloy_section_args(repo, body)
        same = re.search(r"match(?:es)? the \[`[A-Za-z0-9_.]+`\]\(#([A-Za-z0-9_\-]+)\)", body)
        if not names and same and same.group(1) not in seen:
            return args_of(same.group(1), seen + (anchor,))
        return names

    blocks: dict[str, dict] = {}
    anchors: dict[str, str] = {}
    for names, anchor in block_rows(top.get("Blocks", "")):
        key = " > ".join(names)
        blocks[key], anchors[key] = {"args": args_of(anchor)}, anchor
    # blocks that only a block's own section lists (resource_attributes of each detector, ...)
    queue = list(blocks)
    while queue:
        key = queue.pop()
        body = sections.get(refdefs.get(anchors[key], anchors[key]), "")
        for names, anchor in block_rows(body):
            child = f"{key} > {names[-1]}"
            if child not in blocks:
                blocks[child], anchors[child] = {"args": args_of(anchor)}, anchor
                queue.append(child)
    return {"arguments": alloy_section_args(repo, top.get("Arguments", "")), "blocks": blocks}


def alloy(mirror: Path) -> dict:
    repo = Repo(mirror, ALLOY)
    base = "docs/sources/reference/components"
    all_docs = [p for p in repo.ls(base) if p.endswith(".md") and not p.endswith("_index.md")]
    names = sorted(Path(p).stem for p in all_docs)
    components, paths = {}, []
    for name in ALLOY_COMPONENTS:
        path = next(p for p in all_docs if Path(p).stem == name)
        paths.append(path)
        components[name] = alloy_component(repo, path)
    return {"source": repo.source(*paths, "docs/sources/shared/reference/components/*.md"),
            "all_components": names, "components": components}


def write(name: str, data: dict) -> None:
    (OUT / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    mirror = ap.parse_args().mirror
    write("loki.json", loki(mirror))
    write("tempo.json", tempo(mirror))
    write("mimir.json", mimir(mirror))
    write("chart-tempo-distributed.json", chart(mirror, TEMPO_CHART, "charts/tempo-distributed"))
    write("chart-loki.json", chart(mirror, LOKI_CHART, "charts/loki"))
    write("chart-opentelemetry-collector.json", chart(mirror, OTELCOL_CHART, "charts/opentelemetry-collector"))
    write("chart-mimir-distributed.json", chart(mirror, MIMIR, "operations/helm/charts/mimir-distributed"))
    write("alloy.json", alloy(mirror))
    write("otlp-receiver.json", otlp_receiver(mirror))


if __name__ == "__main__":
    main()
