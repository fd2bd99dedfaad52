"""The docs match the code: README.md and docs/*.md are checked against what the package really does.

1. Environment variables: every variable the package reads (found in its source with ``ast``) is in
   docs/configuration.md's table of variables otel-llm reads, and every one listed there is read; the
   variables listed as read by the libraries underneath are really read by the distribution named.
2. Metrics: every instrument the recorder, the gateway, the server side and the drop counters create
   (watched while they are built and driven, in-memory and through the real Prometheus exporter) has a
   row in docs/telemetry.md with the right type, unit and Prometheus names, and every row is emitted.
3. Links: every relative link (anchors included, by GitHub's slug rules) and every repository path the
   docs name exists.
4. Commands: every ``otel-llm ...`` command shown names a real subcommand and real flags, as
   ``otel-llm <sub> --help`` prints them.
"""

from __future__ import annotations

import ast
import asyncio
import glob
import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "otel_llm"
DOCS = REPO / "docs"
CONFIGURATION = DOCS / "configuration.md"
TELEMETRY = DOCS / "telemetry.md"
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# ------------------------------------------------------------------------------------ markdown


FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)


def without_code(text: str) -> str:
    """The text with fenced blocks and inline code blanked out (line numbers kept)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return re.sub(r"`[^`\n]*`", "``", text)


def fenced_blocks(text: str) -> list[str]:
    return [m.group(0) for m in FENCE.finditer(text)]


def inline_code(text: str) -> list[str]:
    """Inline code spans outside fenced blocks (a span may wrap onto the next line)."""
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return [m.group(1) for m in re.finditer(r"`([^`]+)`", prose)]


def sections(text: str) -> dict[str, str]:
    """Heading text -> the text up to the next heading of any level (headings inside code ignored)."""
    found: dict[str, str] = {}
    current, lines = "", []
    in_fence = False
    for line in text.splitlines():
        if line.startswith(("```", "~~~")):
            in_fence = not in_fence
        if not in_fence and re.match(r"#{1,6} ", line):
            found[current] = "\n".join(lines)
            current, lines = line.lstrip("#").strip(), []
        else:
            lines.append(line)
    found[current] = "\n".join(lines)
    return found


def tables(text: str) -> Iterator[tuple[list[str], list[list[str]]]]:
    """Markdown tables: (header cells, rows of cells). Cells are split on unescaped pipes outside code."""

    def cells(line: str) -> list[str]:
        parts, current, in_code = [], "", False
        for char in line.strip().strip("|"):
            if char == "`":
                in_code = not in_code
            if char == "|" and not in_code:
                parts.append(current.strip())
                current = ""
            else:
                current += char
        parts.append(current.strip())
        return parts

    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip()):
            header = cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            yield header, rows
        else:
            i += 1


def code_names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    slugs: dict[str, int] = {}
    found = set()
    for heading in sections(path.read_text()):
        if not heading:
            continue
        slug = github_slug(heading)
        n = slugs.get(slug, 0)
        found.add(slug if n == 0 else f"{slug}-{n}")
        slugs[slug] = n + 1
    return found


# ------------------------------------------------------------------- 1. environment variables


class EnvScan:
    """Environment variables read by the package, found in its source.

    A read is ``os.environ.get(x)``, ``os.getenv(x)``, ``os.environ[x]`` or ``x in os.environ``. ``x`` is
    resolved as far as the source allows: a string; a module constant (``ENV_X = "..."``, also through
    ``semconv.ENV_X``); a function parameter (the strings passed for it where the function is called);
    a loop variable or local (the names in what it iterates or is assigned). An f-string such as
    ``f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"`` becomes a pattern. Module constants named ``ENV_*`` or
    ``*_ENV`` and the defaults of ``--*-env`` options (variables that name variables) count as read.
    A read that cannot be resolved is reported, so the scan never silently misses one."""

    def __init__(self, root: Path) -> None:
        self.names: dict[str, set[str]] = {}  # variable -> files reading it
        self.patterns: dict[str, set[str]] = {}  # regex -> files
        self.unresolved: list[str] = []
        self.trees = {path: ast.parse(path.read_text(), str(path)) for path in sorted(root.rglob("*.py"))}
        self.constants: dict[str, list[Any]] = {}  # NAME -> value nodes (module level, every module)
        for tree in self.trees.values():
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) and node.value else []
                for target in targets:
                    if isinstance(target, ast.Name):
                        self.constants.setdefault(target.id, []).append(node.value)
        for path, tree in self.trees.items():
            self._scan(path, tree)

    def _add(self, name: str, path: Path) -> None:
        self.names.setdefault(name, set()).add(rel(path))

    def _strings(self, node: Any, scope: dict[str, Any], depth: int = 0) -> set[str]:
        """Every env-like string an expression stands for (constants followed, up to a depth)."""
        if node is None or depth > 6:
            return set()
        if isinstance(node, ast.Constant):
            return {node.value} if isinstance(node.value, str) and ENV_NAME.match(node.value) else set()
        if isinstance(node, ast.Name):
            if node.id in scope:
                return self._strings(scope[node.id], scope, depth + 1)
            return self._constant(node.id, depth)
        if isinstance(node, ast.Attribute) and not isinstance(node.value, ast.Call):
            found = self._constant(node.attr, depth)
            return found or self._strings(node.value, scope, depth + 1) if node.attr in ("items", "keys", "values") else found
        if isinstance(node, ast.JoinedStr):
            return set()
        found: set[str] = set()
        for child in ast.iter_child_nodes(node):
            found |= self._strings(child, scope, depth + 1)
        return found

    def _constant(self, name: str, depth: int) -> set[str]:
        found: set[str] = set()
        for value in self.constants.get(name, ()):
            found |= self._strings(value, {}, depth + 1)
        return found

    def _scan(self, path: Path, tree: ast.Module) -> None:
        for node in tree.body:  # module constants that name variables
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and (target.id.startswith("ENV_") or target.id.endswith("_ENV")):
                        for name in self._strings(node.value, {}):
                            self._add(name, path)
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        parents: dict[ast.AST, ast.AST] = {}
        for function in functions:
            for child in ast.walk(function):
                if child is not function:
                    parents[child] = function  # ast.walk is breadth first: the innermost function wins
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
                flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                if any(flag.endswith("-env") for flag in flags):
                    for keyword in node.keywords:
                        if keyword.arg == "default":
                            for name in self._strings(keyword.value, {}):
                                self._add(name, path)
            argument = self._read_argument(node)
            if argument is not None:
                self._resolve(argument, path, parents.get(node), tree, node)

    @staticmethod
    def _is_environ(node: Any) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ") or (isinstance(node, ast.Name) and node.id == "environ")

    def _read_argument(self, node: Any) -> Any:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr in ("get", "pop", "setdefault") and self._is_environ(node.func.value):
                return node.args[0]
            if node.func.attr == "getenv":
                return node.args[0]
        if isinstance(node, ast.Subscript) and self._is_environ(node.value):
            return node.slice
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            if any(self._is_environ(c) for c in node.comparators):
                return node.left
        return None

    def _resolve(self, argument: Any, path: Path, function: Any, tree: ast.Module, site: Any) -> None:
        where = f"{rel(path)}:{site.lineno}"
        if isinstance(argument, ast.JoinedStr):
            pattern = "".join(re.escape(part.value) if isinstance(part, ast.Constant) else "[A-Z0-9_]+"
                              for part in argument.values)
            self.patterns.setdefault(f"^{pattern}$", set()).add(rel(path))
            return
        found = set()
        if isinstance(argument, ast.Constant | ast.Attribute) or (
                isinstance(argument, ast.Name) and argument.id in self.constants):
            found = self._strings(argument, {})
        elif isinstance(argument, ast.Name) and function is not None:
            found = self._from_function(argument.id, function, tree)
        if not found and isinstance(argument, ast.Attribute) and argument.attr.endswith("_env"):
            return  # a variable named by an option (--api-key-env): its default is counted above
        if not found:
            self.unresolved.append(f"{where}: {ast.unparse(argument)}")
        for name in found:
            self._add(name, path)

    def _from_function(self, name: str, function: Any, tree: ast.Module) -> set[str]:
        params = [a.arg for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs]
        if name in params:  # the strings passed for it where the function is called
            index = params.index(name)
            found = set()
            for call in ast.walk(tree):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == function.name:
                    values = [k.value for k in call.keywords if k.arg == name]
                    if index < len(call.args):
                        values.append(call.args[index])
                    for value in values:
                        found |= self._strings(value, {})
            return found
        local: dict[str, Any] = {}
        for node in ast.walk(function):  # locals: assignments and loop variables
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        local[target.id] = node.value
        found = set()
        for node in ast.walk(function):
            if isinstance(node, ast.For | ast.comprehension) and name in {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}:
                found |= self._strings(node.iter, local)
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                found |= self._strings(node.value, local)
        return found


@cache
def env_scan() -> EnvScan:
    return EnvScan(PACKAGE)


def documented_env(heading_prefix: str) -> dict[str, list[str]]:
    """{variable: cells of its row} from configuration.md's table under the heading starting with ``heading_prefix``."""
    parts = [body for heading, body in sections(CONFIGURATION.read_text()).items() if heading.startswith(heading_prefix)]
    assert parts, f"docs/configuration.md has no section '{heading_prefix}...'"
    found = {}
    for header, rows in tables(parts[0]):
        assert header[0] == "variable", f"docs/configuration.md '{heading_prefix}': a table whose first column is not 'variable'"
        for row in rows:
            for name in code_names(row[0]):
                if ENV_NAME.match(name):
                    found[name] = row
    return found


def test_the_scan_resolves_every_read_and_finds_the_known_ones():
    scan = env_scan()
    assert not scan.unresolved, (
        "environment reads tests/test_docs.py cannot resolve to a variable name (extend EnvScan): "
        + "; ".join(scan.unresolved))
    # reads of each kind the scan must follow: literal, constant via module, parameter, loop over a constant,
    # f-string, option default, dict of constants
    for name in ("OTEL_SERVICE_NAME", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "OTEL_LOGS_EXPORTER",
                 "OTEL_BLRP_SCHEDULE_DELAY", "OPENAI_API_KEY", "OTEL_LLM_GATEWAY_ANOMALY_INTERVAL"):
        assert name in scan.names, f"the scan of otel_llm/ lost {name}: EnvScan is broken"
    assert any(re.match(p, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") for p in scan.patterns)


def test_every_variable_read_is_documented_and_every_documented_one_is_read():
    scan = env_scan()
    documented = documented_env("Environment variables otel-llm reads")
    missing = {name: sorted(files) for name, files in scan.names.items() if name not in documented}
    assert not missing, "\n".join(
        f"{name} (read in {', '.join(files)}) is missing from docs/configuration.md, "
        f"table 'Environment variables otel-llm reads'" for name, files in sorted(missing.items()))
    for pattern, files in scan.patterns.items():
        assert any(re.match(pattern, name) for name in documented), (
            f"docs/configuration.md names no variable of the form {pattern} (read in {', '.join(sorted(files))})")
    not_read = [name for name in documented
                if name not in scan.names and not any(re.match(p, name) for p in scan.patterns)]
    assert not not_read, (
        f"docs/configuration.md lists {', '.join(not_read)} as read by otel-llm, but nothing in otel_llm/ reads "
        f"them: delete the rows, or move them to 'Honoured, read by the libraries underneath'")


@cache
def distribution_text(name: str) -> str:
    files = importlib.metadata.distribution(name).files or []
    return "\n".join(Path(str(f.locate())).read_text(errors="replace") for f in files if str(f).endswith(".py"))


def test_variables_honoured_are_read_by_the_library_named():
    documented = documented_env("Honoured")
    assert documented
    ours = env_scan().names
    for name, row in documented.items():
        assert name not in ours, f"{name} is read by otel_llm itself: docs/configuration.md must list it in its first table"
        readers = code_names(row[2])
        assert readers, f"docs/configuration.md: the row of {name} names no distribution in 'read by'"
        assert any(name in distribution_text(reader) for reader in readers), (
            f"docs/configuration.md says {', '.join(readers)} reads {name}, but no source file of it mentions {name}")


# ---------------------------------------------------------------------------------- 2. metrics


TYPE_OF_CREATE = {
    "create_counter": "counter",
    "create_up_down_counter": "up-down counter",
    "create_histogram": "histogram",
    "create_gauge": "gauge",
    "create_observable_counter": "observable counter",
    "create_observable_up_down_counter": "observable up-down counter",
    "create_observable_gauge": "observable gauge",
}


def documented_metrics() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for header, rows in tables(TELEMETRY.read_text()):
        if header[:3] != ["name", "type", "unit"]:
            continue
        assert header[3:] == ["attributes", "with suffixes", "without suffixes"], f"docs/telemetry.md: metric table header {header}"
        for row in rows:
            names = code_names(row[0])
            assert len(row) == 6 and names, f"docs/telemetry.md: malformed metric row {row}"
            assert names[0] not in found, f"docs/telemetry.md: {names[0]} has two rows"
            found[names[0]] = {
                "type": row[1], "unit": (code_names(row[2]) or [""])[0],
                "with": (code_names(row[4]) or [""])[0], "without": (code_names(row[5]) or [""])[0],
            }
    assert found, "docs/telemetry.md has no '| name | type | unit | attributes | with suffixes | without suffixes |' table"
    return found


def _sse(data: Any) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


async def _llm_api(scope: Any, receive: Any, send: Any) -> None:
    """A tiny OpenAI-compatible ASGI app: a JSON answer, or an SSE stream with usage on the last chunk."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = json.loads(body)
    if not request.get("stream"):
        answer = json.dumps({"id": "c1", "object": "chat.completion", "model": request["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    chunk = {"id": "c2", "object": "chat.completion.chunk", "model": request["model"]}
    for n in range(4):
        await asyncio.sleep(0.002)
        await send({"type": "http.response.body", "more_body": True, "body": _sse(
            {**chunk, "choices": [{"index": 0, "delta": {"content": f"w{n} "}, "finish_reason": None}]})})
    await send({"type": "http.response.body", "more_body": True, "body": _sse(
        {**chunk, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}})})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


@pytest.fixture(scope="module")
def metrics_seen() -> dict[str, Any]:
    """Build and drive every writer of metrics with the SDK's Meter watched, an in-memory reader and the
    real Prometheus exporter attached; returns what was created, emitted and exposed."""
    import httpx
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics import _internal as sdk_metrics
    from opentelemetry.sdk.metrics.export import Gauge, Histogram, InMemoryMetricReader, Sum
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_llm.content import CaptureMode
    from otel_llm.gateway import Gateway
    from otel_llm.logs import LogPipeline
    from otel_llm.pricing import Price, PriceTable
    from otel_llm.recorder import Recorder
    from otel_llm.server import LLMServerMiddleware
    from otel_llm.spans import BatchSpanProcessor, register_dropped_metric

    created: dict[str, tuple[str, str, str]] = {}  # name -> (type, unit, file)
    originals = {kind: getattr(sdk_metrics.Meter, kind) for kind in TYPE_OF_CREATE}

    def spy(kind: str) -> Any:
        original = originals[kind]

        def create(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
            caller = sys._getframe(1).f_code.co_filename
            if kind.startswith("create_observable"):
                unit = kwargs.get("unit", args[1] if len(args) > 1 else "")
            else:
                unit = kwargs.get("unit", args[0] if args else "")
            if Path(caller).resolve().is_relative_to(PACKAGE):
                created[name] = (TYPE_OF_CREATE[kind], unit, rel(Path(caller).resolve()))
            return original(self, name, *args, **kwargs)

        return create

    prices = PriceTable({("*", "priced-model"): Price(input_per_mtok=2.0, output_per_mtok=8.0)}, use_library=False)
    reader = InMemoryMetricReader()
    prometheus = PrometheusMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader, prometheus])
    tracer_provider = TracerProvider()
    try:
        for kind in TYPE_OF_CREATE:
            setattr(sdk_metrics.Meter, kind, spy(kind))
        recorder = Recorder(tracer_provider=tracer_provider, meter_provider=meter_provider, prices=prices,
                            capture=CaptureMode.NO_CONTENT)
        gateway = Gateway(recorder, meter_provider=meter_provider, key_id_salt="a-test-salt-of-at-least-16-bytes")
        middleware = LLMServerMiddleware(_llm_api, tracer_provider=tracer_provider, meter_provider=meter_provider,
                                         prices=prices)
        logs = LogPipeline.create([InMemoryLogRecordExporter()], meter_provider=meter_provider)
        span_processor = BatchSpanProcessor(InMemorySpanExporter())
        register_dropped_metric(meter_provider, [span_processor])
    finally:
        for kind, original in originals.items():
            setattr(sdk_metrics.Meter, kind, original)

    # client calls: one plain (priced, with the provider's rate-limit headers), one stream of chunks
    call = recorder.start_call("chat", "openai", "priced-model", server_address="llm.test", server_port=443)
    call.set_response(model="priced-model", finish_reasons=["stop"])
    call.set_usage(10, 5)
    call.response_headers = {"x-ratelimit-remaining-requests": "99", "x-ratelimit-remaining-tokens": "9000"}
    call.end()
    stream = recorder.start_call("chat", "openai", "priced-model", stream=True)
    for _ in range(4):
        time.sleep(0.002)
        stream.chunk()
    stream.set_usage(10, 4)
    stream.end()
    # the gateway's explicit APIs
    gateway.breaker_state("openai", "closed")
    gateway.breaker_state("openai", "open")
    pool = gateway.key_pool("docs", ["sk-docs-key-one-0123456789", "sk-docs-key-two-0123456789"])
    pool.mark_invalid("sk-docs-key-one-0123456789")
    pool.rotated("invalid")
    pool.validated("sk-docs-key-two-0123456789", True)
    gateway.evaluate()

    # the server side: a plain answer and a stream through the ASGI middleware
    async def serve() -> None:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://llm.test") as client:
            for stream_it in (False, True):
                response = await client.post("/v1/chat/completions", json={
                    "model": "priced-model", "stream": stream_it, "messages": [{"role": "user", "content": "hi"}]})
                assert response.status_code == 200

    asyncio.run(serve())

    emitted: dict[str, tuple[str, str]] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if isinstance(metric.data, Histogram):
                    family = "histogram"
                elif isinstance(metric.data, Sum):
                    family = "counter" if metric.data.is_monotonic else "up-down counter"
                elif isinstance(metric.data, Gauge):
                    family = "gauge"
                else:  # pragma: no cover
                    family = type(metric.data).__name__
                if metric.data.data_points:
                    emitted[metric.name] = (family, metric.unit or "")
    exposed = {sample.name for family in prometheus._collector.collect() for sample in family.samples}
    logs.shutdown()
    span_processor.shutdown()
    meter_provider.shutdown()
    tracer_provider.shutdown()
    return {"created": created, "emitted": emitted, "exposed": exposed}


CREATE_CALL = re.compile(r"\.(?:" + "|".join(TYPE_OF_CREATE) + r")\(")


def test_every_module_that_creates_instruments_is_exercised(metrics_seen):
    creating = {rel(path) for path in PACKAGE.rglob("*.py") if CREATE_CALL.search(path.read_text())}
    exercised = {file for _type, _unit, file in metrics_seen["created"].values()}
    assert creating <= exercised, (
        f"{', '.join(sorted(creating - exercised))} create metric instruments that the metrics_seen fixture of "
        f"tests/test_docs.py never builds: add them there, so docs/telemetry.md is checked against them")


def test_every_metric_the_code_creates_is_in_the_telemetry_reference(metrics_seen):
    documented = documented_metrics()
    created = metrics_seen["created"]
    missing = sorted(set(created) - set(documented))
    assert not missing, "\n".join(
        f"{name} ({created[name][0]}, unit {created[name][1]}, created in {created[name][2]}) is missing from "
        f"docs/telemetry.md's metric tables" for name in missing)
    extra = sorted(set(documented) - set(created))
    assert not extra, f"docs/telemetry.md documents {', '.join(extra)}, which no code in otel_llm/ creates"
    for name, (kind, unit, file) in created.items():
        row = documented[name]
        assert row["type"] == kind, f"docs/telemetry.md: {name} is a {kind} ({file}), the page says {row['type']!r}"
        assert row["unit"] == unit, f"docs/telemetry.md: {name} has unit {unit!r} ({file}), the page says {row['unit']!r}"


def test_every_documented_metric_is_emitted_with_its_type_unit_and_prometheus_names(metrics_seen):
    emitted, exposed = metrics_seen["emitted"], metrics_seen["exposed"]
    for name, row in documented_metrics().items():
        assert name in emitted, (
            f"{name} (docs/telemetry.md) got no data point from the metrics_seen fixture: drive it there")
        family, unit = emitted[name]
        kind = row["type"].removeprefix("observable ")
        assert kind == family, f"docs/telemetry.md: {name} is exported as a {family}, the page says {row['type']!r}"
        assert unit == row["unit"], f"docs/telemetry.md: {name} is exported with unit {unit!r}, the page says {row['unit']!r}"
        base = name.replace(".", "_")
        assert row["with"] in exposed, (
            f"docs/telemetry.md: {name}'s name with suffixes {row['with']!r} is not what the Prometheus exporter "
            f"writes ({', '.join(sorted(s for s in exposed if s.startswith(base)))})")
        without = base + ("_bucket" if family == "histogram" else "")
        assert row["without"] == without, (
            f"docs/telemetry.md: {name} without suffixes is {without!r} (Mimir's OTLP default), the page says {row['without']!r}")


# ------------------------------------------------------------------------------ 3. links, paths


PATH_ROOTS = ("otel_llm", "tests", "docs", "deploy", "grafana", "collector-config", "bench", ".ci")
REPO_PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(re.escape(r) for r in PATH_ROOTS) + r")/[\w./*-]*)")
IMAGES = {"grafana/otel-lgtm", "grafana/grafana", "grafana/mimir", "grafana/tempo", "grafana/loki", "grafana/alloy"}
TOP_FILES = re.compile(r"(?<![\w./-])(pyproject\.toml|README\.md)(?![\w.-])")


def test_relative_links_and_their_anchors_exist():
    problems = []
    for path in doc_files():
        for line_no, line in enumerate(without_code(path.read_text()).splitlines(), 1):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue  # http(s), mailto
                file_part, _, anchor = target.partition("#")
                linked = (path.parent / file_part).resolve() if file_part else path
                if not linked.exists():
                    problems.append(f"{rel(path)}:{line_no}: link to {target}: no such file")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    problems.append(f"{rel(path)}:{line_no}: link to {target}: {rel(linked)} has no heading "
                                    f"with anchor #{anchor}")
    assert not problems, "\n".join(problems)


def test_repository_paths_named_in_the_docs_exist():
    problems = []
    for path in doc_files():
        text = path.read_text()
        for chunk in inline_code(text) + fenced_blocks(text):
            for found in REPO_PATH.findall(chunk) + TOP_FILES.findall(chunk):
                name = found.split("::")[0].rstrip(".,;:)")
                if name in IMAGES:
                    continue  # a Docker image, not a path
                if "*" in name:
                    if not glob.glob(str(REPO / name)):
                        problems.append(f"{rel(path)}: `{name}` matches no file")
                elif not (REPO / name).exists():
                    problems.append(f"{rel(path)}: `{name}` does not exist")
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_slug_rules():
    assert github_slug("`otel-llm traffic`: send a few LLM calls and see them arrive") == (
        "otel-llm-traffic-send-a-few-llm-calls-and-see-them-arrive")
    assert github_slug('"No data": troubleshooting') == "no-data-troubleshooting"
    assert github_slug("Laptop: compose") == "laptop-compose"


# -------------------------------------------------------------------------------- 4. commands


@cache
def cli_help(*argv: str) -> str:
    result = subprocess.run([sys.executable, "-m", "otel_llm.cli", *argv, "--help"], capture_output=True, text=True,
                            timeout=60, cwd=REPO, env={"PATH": "", "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    return result.stdout


@cache
def subcommands() -> dict[str, set[str]]:
    choices = re.search(r"\{([a-z,-]+)\}", cli_help())
    assert choices, cli_help()
    return {sub: set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", cli_help(sub))) for sub in choices.group(1).split(",")}


def shown_commands(path: Path) -> list[tuple[str, list[str]]]:
    """(the command as shown, its words) for every ``otel-llm <sub> ...`` in fenced blocks and inline code."""
    text = path.read_text()
    found = []
    chunks = [re.sub(r"\\\n\s*", " ", block) for block in fenced_blocks(text)] + inline_code(text)
    for chunk in chunks:
        for line in chunk.splitlines():
            match = re.search(r"(?<![\w-])otel-llm\s+(.*)", line)
            if not match or match.group(1).startswith("<"):
                continue
            words = []
            try:
                lexed = shlex.split(match.group(1), comments=True)
            except ValueError:
                lexed = match.group(1).split()
            for word in lexed:
                if word in ("|", "&&", ";", "||", ">", "2>&1"):
                    break
                words.append(word)
            if words and re.match(r"^[a-z]", words[0]):
                found.append((line.strip(), words))
    return found


def test_commands_shown_use_real_subcommands_and_flags():
    known = subcommands()
    assert set(known) >= {"demo", "traffic", "check"}
    problems, seen = [], 0
    for path in doc_files():
        for shown, words in shown_commands(path):
            if words[0] in ("demo", "traffic", "check") or path.name in ("README.md", "cli.md"):
                seen += 1
                sub = words[0]
                if sub not in known:
                    problems.append(f"{rel(path)}: `{shown}`: otel-llm has no subcommand {sub!r} ({', '.join(known)})")
                    continue
                for word in words[1:]:
                    flag = word.split("=", 1)[0]
                    if flag.startswith("--") and flag not in known[sub]:
                        problems.append(f"{rel(path)}: `{shown}`: `otel-llm {sub} --help` has no {flag}")
    assert seen >= 5, "tests/test_docs.py found almost no otel-llm commands in the docs: the extraction is broken"
    assert not problems, "\n".join(problems)


def test_flags_named_in_each_cli_section_are_real():
    """docs/cli.md: inside a section about `otel-llm <sub>`, every `--flag` it names is one of that subcommand's."""
    known = subcommands()
    problems = []
    for heading, body in sections((DOCS / "cli.md").read_text()).items():
        match = re.match(r"`otel-llm (\w+)`", heading)
        if not match:
            continue
        sub = match.group(1)
        assert sub in known, f"docs/cli.md has a section for otel-llm {sub}, which does not exist"
        for code in inline_code(body) + fenced_blocks(body):
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?![\w.])", code):
                if flag not in known[sub] and flag not in ("--help", "--enable-feature"):  # Prometheus' own flag
                    problems.append(f"docs/cli.md, section `otel-llm {sub}`: {flag} is not a flag of otel-llm {sub}")
    assert not problems, "\n".join(sorted(set(problems)))
