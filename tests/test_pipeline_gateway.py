"""The shipped gateway tier, unmodified: agent -> load balancer -> two tail samplers, by our collector distribution.

    traffic --OTLP--> agent (gateway/otelcol-agent.yaml): k8s_attributes from a fake Kubernetes API, environment,
      message content removed --otlp_grpc/gateway--> load balancer (gateway/otelcol-loadbalancer.yaml):
      span_metrics, routing by trace id --load_balancing, DNS name of the samplers--> sampler 1 / sampler 2
      (gateway/otelcol-sampler.yaml) --otlp_grpc/tempo--> Jaeger 1 / Jaeger 2 (one trace store per sampler:
      where a trace landed shows)
    metrics (load balancer's span_metrics and app metrics, samplers' own) --> Prometheus 3 with suffixes

The agent is a DaemonSet config: its k8s_attributes processor (passthrough: false, auth_type serviceAccount) asks
the Kubernetes API for the pods and matches a pod's status.podIP to the OTLP client's address. Here the API is
tests/support/kube_api.py (HTTPS with a throwaway CA, a bearer token), and the agent gets what Kubernetes gives
a pod: KUBERNETES_SERVICE_HOST/PORT, and the service-account files at /var/run/secrets/kubernetes.io/serviceaccount
(a tmpfs on /run in the agent's mount namespace only). The one pod it lists has the address the agent sees
the traffic come from (127.0.0.1, the relays' end in the agent's namespace), so what passes gets that pod's
metadata (checked on spans and metrics). Traffic is sent only once the agent has added the pod.

The configs bind the same fixed ports (0.0.0.0:4317, 13133, 8888), so each collector runs in a network
namespace of its own, and relays of the test process carry TCP between their loopbacks and the backends
(tests/support/backends.py: NetNamespace, Relay). The agent dials the load balancer and the load balancer its
samplers on port 4317, the port each one's own receiver holds, so they reach each other over a veth pair per
hop that exists only between the two namespaces; the samplers' DNS name (SAMPLER_HEADLESS_SERVICE) resolves,
in the load balancer's namespace only (a private /etc/hosts), to the two samplers' addresses, as a headless
Service's name resolves to one address per pod. Endpoints otherwise come in through the variables the configs
read; nothing in the files changes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.backends import (
    SUFFIXES, Jaeger, NetNamespace, OTLPFanout, Prometheus3, Relay, netns_supported,
)
from tests.support.faults import free_port
from tests.support.kube_api import KubeAPI, pod, replicaset
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import stop, wait_collector_ready, wait_until
from tests.test_pipeline_collector import _canaries, _collector_binary, _traffic

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = ROOT / "collector-config" / "gateway"
SAMPLERS_NAME = "otelcol-samplers"
CALLS = 150
ERROR_SHARE = 0.2
CROSS_SERVICE_TRACES = 24
KEEP_CALLS = 30
WAIT = 90.0
ENVIRONMENT = "gateway-test"  # DEPLOYMENT_ENVIRONMENT of the agent
# The pod the fake Kubernetes API lists (what the agent's extract.metadata asks for), and its status.podIP: the
# address the agent sees its OTLP clients come from (the relays' end in its namespace).
POD = {"k8s.pod.name": "checkout-7d4b9c-x2x", "k8s.namespace.name": "shop", "k8s.deployment.name": "checkout",
       "k8s.node.name": "node-a"}
POD_IP = "127.0.0.1"
REPLICASET = "checkout-7d4b9c"  # <deployment>-<pod-template-hash>, the pod's owner
SERVICE_ACCOUNT = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is a symlink to /run
AGENT_SUBNET = 3  # the veth agent -> load balancer (the samplers' are 1 and 2)
CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")
# A shipped config the collector rejects today, and the error it gives (see tests/test_collector_distribution.py).
KNOWN_BROKEN: dict[str, str] = {}  # configs validate rejects with a known error (none today)


@dataclass
class Gateway:
    prom: Prometheus3
    jaegers: list[Jaeger]
    logs: OTLPReceiver
    kube: KubeAPI
    entry_grpc: str  # http://127.0.0.1:port, relayed to the agent's 4317
    entry_http: str  # relayed to the agent's 4318
    agent_metrics: str  # relayed to the agent's own :8888/metrics
    logs_dir: Path
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    summary: dict[str, Any] = field(default_factory=dict)
    cross_traces: list[str] = field(default_factory=list)
    canaries: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-2500:]}"
                         for p in sorted(self.logs_dir.glob("*.log")))

    @property
    def service(self) -> str:
        return f"gw-traffic-{self.run}"

    @property
    def keep_service(self) -> str:  # llm.content.keep=true
        return f"gw-keep-{self.run}"

    def agent_metric(self, name: str) -> float:
        """The agent's own counter ``name`` (Prometheus exposition, ``_total`` or not), 0 when absent."""
        with urllib.request.urlopen(self.agent_metrics, timeout=5) as response:
            text = response.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if re.match(rf"{name}(_total)?[{{ ]", line))


def _wait(what: str, probe: Callable[[], Any], gateway: Gateway, timeout: float = WAIT) -> Any:
    return wait_until(what, probe, timeout, gateway.log)


def _cross_service_traces(endpoint: str, run: str, count: int) -> list[str]:
    """Traces whose spans come from two services, exported separately (the back end's first, the front end's
    a second later, as two processes would), each trace failed in the back end so every one is kept."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

    providers = {}
    for role in ("front", "back"):
        provider = TracerProvider(resource=Resource.create({"service.name": f"gw-{role}-{run}"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        providers[role] = provider
    front, back = (providers[r].get_tracer("gateway-test") for r in ("front", "back"))
    trace_ids = []
    for _ in range(count):
        parent = front.start_span("GET /answer", kind=SpanKind.SERVER)
        trace_ids.append(format(parent.get_span_context().trace_id, "032x"))
        with back.start_as_current_span("chat gpt-4o", context=set_span_in_context(parent),
                                        kind=SpanKind.CLIENT) as child:
            child.set_attribute("gen_ai.provider.name", "openai")
            child.set_status(Status(StatusCode.ERROR, "upstream failed"))
            child.set_attribute("error.type", "UpstreamError")
        parent.end()
    assert providers["back"].force_flush(10_000)
    time.sleep(1.0)
    assert providers["front"].force_flush(10_000)
    for provider in providers.values():
        provider.shutdown()
    return trace_ids


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    why = netns_supported()
    if why:
        pytest.skip(f"the gateway tier runs each collector in a network namespace: {why}")
    binary = _collector_binary()
    for config in ("otelcol-agent.yaml", "otelcol-loadbalancer.yaml", "otelcol-sampler.yaml"):
        check = subprocess.run([binary, "validate", f"--config={GATEWAY / config}"], capture_output=True, text=True,
                               env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")})
        if check.returncode != 0:
            output = check.stderr + check.stdout
            known = KNOWN_BROKEN.get(config)
            if known and known in output:  # the same entry as tests/test_collector_distribution.py's KNOWN_BROKEN
                pytest.xfail(f"{config} does not load in otelcol-llm ({known}); this test runs once it is fixed")
            pytest.fail(f"otelcol-llm validate --config={config}:\n{output}")
    tmp = Path(tempfile.mkdtemp(prefix="otel-llm-gateway-"))
    # the veth addresses NetNamespace.link gives the samplers (subnets 1 and 2)
    hosts = "127.0.0.1 localhost\n" + "".join(f"fd{n:02x}::2 {SAMPLERS_NAME}\n" for n in (1, 2))
    kube = KubeAPI([pod(POD["k8s.pod.name"], POD["k8s.namespace.name"], node=POD["k8s.node.name"], ip=POD_IP,
                        replicaset=REPLICASET)],
                   [replicaset(REPLICASET, POD["k8s.namespace.name"], deployment=POD["k8s.deployment.name"])])
    service_account = tmp / "serviceaccount"
    namespaces = {
        "lb": NetNamespace("lb", hosts=hosts),
        "sampler-1": NetNamespace("sampler-1"),
        "sampler-2": NetNamespace("sampler-2"),
        # the service-account files on a tmpfs over /run, seen by the agent's mount namespace only
        "agent": NetNamespace("agent", setup=["mount -t tmpfs tmpfs /run", f"mkdir -p {SERVICE_ACCOUNT}",
                                              f"cp {service_account}/token {service_account}/ca.crt "
                                              f"{service_account}/namespace {SERVICE_ACCOUNT}/"]),
    }
    relays: list[Relay] = []
    processes: list[subprocess.Popen[bytes]] = []

    def relay(listen_ns: NetNamespace | None, listen: tuple[str, int], target_ns: NetNamespace | None,
              target: tuple[str, int]) -> None:
        relays.append(Relay(listen_ns.net if listen_ns else None, listen, target_ns.net if target_ns else None,
                            target).start())

    with Prometheus3(translation_strategy=SUFFIXES) as prom, Jaeger() as jaeger_1, Jaeger() as jaeger_2, \
            OTLPReceiver(grpc=False, http=True) as logs, OTLPFanout([prom.otlp_endpoint]) as fanout, kube:
        try:
            kube.service_account(service_account, namespace="otel")
            for namespace in namespaces.values():
                namespace.start()
            lb, agent = namespaces["lb"], namespaces["agent"]
            fanout_port = int(fanout.url.rsplit(":", 1)[1])
            logs_port = int(logs.http_endpoint.rsplit(":", 1)[1])
            entry_grpc, entry_http, agent_metrics = free_port(), free_port(), free_port()
            relay(None, ("127.0.0.1", entry_grpc), agent, ("127.0.0.1", 4317))
            relay(None, ("127.0.0.1", entry_http), agent, ("127.0.0.1", 4318))
            relay(None, ("127.0.0.1", agent_metrics), agent, ("127.0.0.1", 8888))
            relay(agent, ("127.0.0.1", kube.port), None, ("127.0.0.1", kube.port))
            load_balancer, _ = lb.link(agent, AGENT_SUBNET)
            for port in (fanout_port, logs_port):
                relay(lb, ("127.0.0.1", port), None, ("127.0.0.1", port))
            for index, jaeger in enumerate((jaeger_1, jaeger_2), start=1):
                sampler = namespaces[f"sampler-{index}"]
                lb.link(sampler, index)
                relay(sampler, ("127.0.0.1", fanout_port), None, ("127.0.0.1", fanout_port))
                jaeger_port = int(jaeger.otlp_grpc_endpoint.rsplit(":", 1)[1])
                relay(sampler, ("127.0.0.1", jaeger_port), None, ("127.0.0.1", jaeger_port))

            base_env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
            envs = {
                "lb": {"SAMPLER_HEADLESS_SERVICE": SAMPLERS_NAME, "MIMIR_OTLP_ENDPOINT": fanout.url,
                       "LOKI_OTLP_ENDPOINT": logs.http_endpoint},
                "sampler-1": {"TEMPO_OTLP_ENDPOINT": jaeger_1.otlp_grpc_endpoint, "MIMIR_OTLP_ENDPOINT": fanout.url},
                "sampler-2": {"TEMPO_OTLP_ENDPOINT": jaeger_2.otlp_grpc_endpoint, "MIMIR_OTLP_ENDPOINT": fanout.url},
                "agent": {"GATEWAY_OTLP_ENDPOINT": f"[{load_balancer}]:4317", "DEPLOYMENT_ENVIRONMENT": ENVIRONMENT,
                          "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kube.port)},
            }
            configs = {"lb": "otelcol-loadbalancer.yaml", "sampler-1": "otelcol-sampler.yaml",
                       "sampler-2": "otelcol-sampler.yaml", "agent": "otelcol-agent.yaml"}
            # samplers first, then the load balancer that resolves them, then the agent that sends to it
            for name in ("sampler-1", "sampler-2", "lb", "agent"):
                log = tmp / f"{name}.log"
                with open(log, "wb") as out:
                    process = namespaces[name].popen([binary, f"--config={GATEWAY / configs[name]}"],
                                                     env={**base_env, **envs[name]}, cwd=tmp, stdout=out,
                                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                processes.append(process)
                wait_collector_ready(log, process)

            result = Gateway(prom, [jaeger_1, jaeger_2], logs, kube, f"http://127.0.0.1:{entry_grpc}",
                             f"http://127.0.0.1:{entry_http}", f"http://127.0.0.1:{agent_metrics}/metrics", tmp)
            # k8s_attributes starts without waiting for its informer (wait_for_metadata: false): send once the
            # agent has added the pod, in each of its three pipelines (a processor instance each)
            _wait("the agent adds the pod the Kubernetes API lists",
                  lambda: result.agent_metric("otelcol_k8s_watcher_pod_added") >= 3, result, timeout=30)
            keep = _traffic(result.keep_service, result.entry_http, "http/protobuf", 22,
                            {"OTEL_RESOURCE_ATTRIBUTES": "llm.content.keep=true"}, error_share=0.5,
                            plan=("--count", str(KEEP_CALLS), "--rate", "200"))
            traffic = _traffic(result.service, result.entry_grpc, "grpc", 21, {}, error_share=ERROR_SHARE,
                               plan=("--count", str(CALLS), "--rate", "200"))
            result.cross_traces = _cross_service_traces(result.entry_grpc, result.run, CROSS_SERVICE_TRACES)
            result.canaries = _canaries(result.entry_grpc, f"gw-canary-{result.run}", 6)
            out, err = traffic.communicate(timeout=180)
            assert traffic.returncode == 0, err[-3000:]
            result.summary = json.loads(out)
            _, err = keep.communicate(timeout=180)
            assert keep.returncode == 0, err[-3000:]
            yield result
        finally:
            for process in reversed(processes):
                stop(process)
            for item in relays:
                item.stop()
            for namespace in namespaces.values():
                namespace.stop()
            shutil.rmtree(tmp, ignore_errors=True)


def _trace_ids(jaeger: Jaeger, service: str, tags: dict[str, Any] | None = None) -> set[int]:
    return {int(t["traceID"], 16) for t in jaeger.find_traces(service, tags, limit=5000)}


def _settled(probe: Callable[[], Any], quiet: float = 6.0, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last, since = probe(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(1)
        now = probe()
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_traces_from_two_services_land_whole_on_one_sampler(gateway: Gateway) -> None:
    wanted = {int(t, 16) for t in gateway.cross_traces}
    front, back = f"gw-front-{gateway.run}", f"gw-back-{gateway.run}"
    _wait("every cross-service trace in a trace store",
          lambda: wanted <= set().union(*(_trace_ids(j, back) for j in gateway.jaegers)), gateway)
    where: dict[int, list[int]] = {}
    for index, jaeger in enumerate(gateway.jaegers):
        for trace in jaeger.find_traces(back, limit=5000):
            trace_id = int(trace["traceID"], 16)
            if trace_id not in wanted:
                continue
            where.setdefault(trace_id, []).append(index)
            full = jaeger.trace(trace["traceID"])
            services = {p["serviceName"] for p in full["processes"].values()}
            assert services == {front, back}, f"trace {trace['traceID']} on sampler {index + 1} has only {services}"
    split = {format(t, "032x"): w for t, w in where.items() if len(w) != 1}
    assert not split, f"traces on more than one sampler: {split}"
    per_sampler = [sum(1 for w in where.values() if w == [i]) for i in range(len(gateway.jaegers))]
    assert all(per_sampler), f"all traces went to one sampler: {per_sampler}"


def test_every_trace_is_on_exactly_one_sampler_and_errors_are_all_kept(gateway: Gateway) -> None:
    failed = gateway.summary["failed"]
    assert failed > 0
    kinds = list(gateway.summary["errors"])

    def errors() -> list[set[int]]:
        return [set().union(*(_trace_ids(j, gateway.service, {"error.type": k}) for k in kinds))
                for j in gateway.jaegers]

    _wait(f"{failed} error traces across the samplers", lambda: sum(len(e) for e in errors()) >= failed, gateway)
    per_sampler = errors()
    assert not per_sampler[0] & per_sampler[1], "an error trace was kept by both samplers"
    assert sum(len(e) for e in per_sampler) == failed
    every = _settled(lambda: [_trace_ids(j, gateway.service) for j in gateway.jaegers])
    assert not every[0] & every[1], "a trace is on both samplers"
    kept_ok = sum(len(e) for e in every) - failed
    succeeded = gateway.summary["succeeded"]
    share = kept_ok / succeeded
    print(f"gateway: samplers kept {[len(e) for e in every]} traces; {kept_ok} of {succeeded} without error ({share:.1%})")
    # binomial(n~120, p=0.1): 2% and 22% are more than 3 standard deviations away
    assert 0.02 <= share <= 0.22, f"kept {kept_ok} of {succeeded} traces without error ({share:.1%}); configured 10%"


def test_the_check_canary_is_kept_by_whichever_sampler_gets_it(gateway: Gateway) -> None:
    for trace_id in gateway.canaries:
        found = _wait(f"canary {trace_id} in a trace store",
                      lambda t=trace_id: [i for i, j in enumerate(gateway.jaegers) if j.trace(t)], gateway)
        assert len(found) == 1, f"canary {trace_id} on samplers {found}"


def test_spanmetrics_on_the_load_balancer_count_every_span(gateway: Gateway) -> None:
    sent = gateway.summary["sent"]
    calls = f'sum(traces_span_metrics_calls_total{{job="{gateway.service}"}})'
    _wait(f"span_metrics count {sent} calls", lambda: (r := gateway.prom.query(calls)) and float(r[0]["value"][1]) == sent,
          gateway)
    errors = gateway.prom.query_value(
        f'sum(traces_span_metrics_calls_total{{job="{gateway.service}", status_code="STATUS_CODE_ERROR"}})')
    assert errors == gateway.summary["failed"]
    duration = f'sum(gen_ai_client_operation_duration_seconds_count{{job="{gateway.service}"}})'
    _wait("app metrics through agent and load balancer",
          lambda: (r := gateway.prom.query(duration)) and float(r[0]["value"][1]) == sent, gateway)


def test_samplers_own_telemetry_arrives(gateway: Gateway) -> None:
    """Each sampler scrapes its own :8888 into Mimir: two instances report tail-sampling decisions."""
    query = '{__name__=~"otelcol_processor_tail_sampling_count_traces_sampled(_total)?"}'
    found = _wait("tail-sampling metrics of both samplers",
                  lambda: len({s["metric"].get("instance") for s in gateway.prom.query(query)}) >= 2, gateway)
    assert found


def _traces(gateway: Gateway, service: str) -> list[dict[str, Any]]:
    return [t for j in gateway.jaegers for t in j.find_traces(service, limit=5000)]


def test_the_agent_reads_the_pods_from_the_kubernetes_api(gateway: Gateway) -> None:
    """The agent became ready with k8s_attributes on: it found the API by KUBERNETES_SERVICE_HOST/PORT, trusted its
    certificate by the service account's ca.crt, sent its token (else 401), and asked for nothing the fake does not
    serve (else 404). With the shipped extract.metadata it watches pods only (k8s.deployment.name comes from the
    ReplicaSet name and the pod-template-hash label), by client-go's WatchList (initial events, then a bookmark)."""
    log = (gateway.logs_dir / "agent.log").read_text(errors="replace")
    assert "Everything is ready" in log and "kube client" not in log, log[-3000:]
    served = gateway.kube.served("/api/v1/pods")
    assert len(served) >= 3, f"pods served to the agent's three pipelines: {gateway.kube.requests}"
    refused = [r for r in gateway.kube.requests if r.status != 200]
    assert not refused, f"requests the fake API refused (401: no token; 404: not served): {refused}"
    assert gateway.agent_metric("otelcol_k8s_watcher_pod_added") >= 3


def test_everything_through_the_agent_carries_the_pods_kubernetes_metadata(gateway: Gateway) -> None:
    """Every span of every service sent through the agent has the pod's metadata (looked up by the client's
    address) and the agent's deployment.environment.name on its resource; so do the app's metrics."""
    expected = {**POD, "deployment.environment.name": ENVIRONMENT}
    services = [gateway.service, gateway.keep_service, f"gw-front-{gateway.run}", f"gw-back-{gateway.run}",
                f"gw-canary-{gateway.run}"]
    spans = 0
    for service in services:
        for trace in _wait(f"traces of {service}", lambda s=service: _traces(gateway, s), gateway):
            for span in trace["spans"]:
                tags = Jaeger.process_tags(trace, span)
                assert {key: tags.get(key) for key in expected} == expected, f"{service}: {tags}"
                spans += 1
    print(f"agent: {spans} spans of {len(services)} services carry {expected}")
    info = _wait("target_info of the traffic service",
                 lambda: gateway.prom.query(f'target_info{{job="{gateway.service}"}}'), gateway)
    assert {key: info[0]["metric"].get(key.replace(".", "_")) for key in POD} == POD
    duration = (f'gen_ai_client_operation_duration_seconds_count{{job="{gateway.service}", '
                f'deployment_environment_name="{ENVIRONMENT}"}}')
    assert gateway.prom.query(duration), f"no {duration}"


def test_the_agent_removes_message_content_unless_the_service_keeps_it(gateway: Gateway) -> None:
    """Only the agent's transform deletes content in this tier (the load balancer and samplers keep it)."""
    kept = _wait("traces of the service with llm.content.keep=true", lambda: _traces(gateway, gateway.keep_service),
                 gateway)
    removed = _wait("traces of the service without llm.content.keep", lambda: _traces(gateway, gateway.service),
                    gateway)
    removed_spans = [s for t in removed for s in t["spans"]]
    leaked = [s["spanID"] for s in removed_spans if set(Jaeger.span_tags(s)) & set(CONTENT_KEYS)]
    assert not leaked, f"content passed the agent on spans {leaked[:5]}"
    kept_spans = [s for t in kept for s in t["spans"]]
    with_content = [s for s in kept_spans if "gen_ai.input.messages" in Jaeger.span_tags(s)]
    assert with_content, "llm.content.keep=true but no span kept gen_ai.input.messages (was content captured?)"
    assert Jaeger.process_tags(kept[0], kept[0]["spans"][0])["llm.content.keep"] == "true"
    print(f"content: {len(removed_spans)} spans without keep carry none; {len(with_content)} of {len(kept_spans)} "
          f"spans with keep carry gen_ai.input.messages")
