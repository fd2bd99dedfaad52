"""A fake Kubernetes API server: the few read-only requests a collector's ``k8sattributes`` processor makes.

HTTPS on 127.0.0.1 with a certificate for that address, signed by a throwaway CA made here; bearer-token
authentication (the token of the service-account files ``service_account()`` writes). It serves, as JSON:

* pods (``/api/v1/pods``, ``/api/v1/namespaces/<ns>/pods``): a ``PodList``, or with ``watch=true`` a watch stream;
  with ``sendInitialEvents=true`` (client-go's WatchList, on by default since 1.35) the stream starts with an
  ``ADDED`` event per pod and the ``k8s.io/initial-events-end`` bookmark;
* replicasets (``/apis/apps/v1/replicasets``, namespaced too): a ``PartialObjectMetadataList`` / watch stream;
* anything else: a 404 ``Status``; a missing or wrong token: a 401 ``Status``.

A watch is held open (no further events) for ``watch_hold`` seconds at most, then ended, as a real API server
ends watches at their timeout. ``requests`` records every request, with the status it got once its initial
data was written.
"""

from __future__ import annotations

import datetime
import json
import shutil
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["KubeAPI", "KubeRequest", "pod", "replicaset"]

RESOURCE_VERSION = "1000"


class KubeRequest(NamedTuple):
    method: str
    path: str
    query: dict[str, str]
    status: int


def pod(name: str, namespace: str, *, node: str, ip: str, replicaset: str | None = None) -> dict[str, Any]:
    """A running pod; owned by ``replicaset`` (named ``<deployment>-<pod-template-hash>``) if given."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-pod-{name}",
                                "resourceVersion": RESOURCE_VERSION, "creationTimestamp": "2025-01-01T00:00:00Z"}
    if replicaset:
        metadata["labels"] = {"pod-template-hash": replicaset.rsplit("-", 1)[1]}
        metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replicaset,
                                        "uid": f"uid-rs-{replicaset}", "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "startTime": "2025-01-01T00:00:01Z"}}


def replicaset(name: str, namespace: str, *, deployment: str) -> dict[str, Any]:
    """A ReplicaSet's metadata (what the metadata client gets), owned by Deployment ``deployment``."""
    return {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-rs-{name}",
                         "resourceVersion": RESOURCE_VERSION,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
                                              "uid": f"uid-deploy-{deployment}", "controller": True}]}}


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate and key for 127.0.0.1 signed by it: (ca.crt, server.crt, server.key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject: str, issuer: str, public: Any, signer: Any, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("fake-kube-ca", "fake-kube-ca", ca_key.public_key(), ca_key, True)
    server = build("kube-apiserver", "fake-kube-ca", key.public_key(), ca_key, False)
    paths = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class KubeAPI:
    """The fake API server on ``https://127.0.0.1:<port>`` serving ``pods`` and ``replicasets`` (see the module)."""

    def __init__(self, pods: Sequence[dict[str, Any]], replicasets: Sequence[dict[str, Any]] = (), *,
                 token: str = "fake-service-account-token", watch_hold: float = 30.0) -> None:
        self.resources = {("", "pods"): ("PodList", "v1", list(pods)),
                          ("apps", "replicasets"): ("PartialObjectMetadataList", "meta.k8s.io/v1", list(replicasets))}
        self.token = token
        self.watch_hold = watch_hold
        self.requests: list[KubeRequest] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="otel-llm-kube-api-"))

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("KubeAPI is not running")
        return self._server.server_address[1]

    @property
    def ca_path(self) -> Path:
        return self._tmp / "ca.crt"

    def service_account(self, directory: Path, namespace: str = "default") -> Path:
        """Write what Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(self.token)
        (directory / "ca.crt").write_bytes(self.ca_path.read_bytes())
        (directory / "namespace").write_text(namespace)
        return directory

    def served(self, path: str) -> list[KubeRequest]:
        """Requests for ``path`` answered 200 (lists and the initial events of watches written)."""
        return [r for r in list(self.requests) if r.path == path and r.status == 200]

    def start(self) -> KubeAPI:
        _, cert, key = _certificates(self._tmp)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                api._answer(self, url.path, query)

            def log_message(self, *args: Any) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="kube-api", daemon=True)
        self._thread.start()
        return self

    def _answer(self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, str]) -> None:
        def record(status: int) -> None:
            self.requests.append(KubeRequest("GET", path, query, status))

        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return record(self._status(handler, 401, "Unauthorized", "Unauthorized"))
        parts = path.strip("/").split("/")
        # /api/v1[/namespaces/<ns>]/<resource>, /apis/<group>/v1[/namespaces/<ns>]/<resource>
        group = "" if parts[:2] == ["api", "v1"] else parts[1] if parts[0] == "apis" and len(parts) > 2 else None
        rest = parts[2:] if group == "" else parts[3:]
        namespace = None
        if len(rest) == 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        found = self.resources.get((group, rest[0])) if group is not None and len(rest) == 1 else None
        if found is None:
            return record(self._status(handler, 404, "NotFound",
                                       f"the server could not find the requested resource ({path})"))
        kind, api_version, objects = found
        objects = [o for o in objects if namespace in (None, o["metadata"]["namespace"])]
        if query.get("watch") not in ("true", "1"):
            self._send(handler, 200, {"apiVersion": api_version, "kind": kind,
                                      "metadata": {"resourceVersion": RESOURCE_VERSION}, "items": objects})
            return record(200)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Connection", "close")
        handler.end_headers()
        if query.get("sendInitialEvents") == "true":
            for item in objects:
                self._event(handler, "ADDED", item)
            item_kind = kind.removesuffix("List")
            self._event(handler, "BOOKMARK", {
                "apiVersion": api_version, "kind": item_kind,
                "metadata": {"resourceVersion": RESOURCE_VERSION,
                             "annotations": {"k8s.io/initial-events-end": "true"}}})
        record(200)  # initial events written; held open from here on
        timeout = float(query.get("timeoutSeconds") or self.watch_hold)
        self._stopping.wait(min(timeout, self.watch_hold))
        handler.close_connection = True

    @staticmethod
    def _event(handler: BaseHTTPRequestHandler, kind: str, item: dict[str, Any]) -> None:
        handler.wfile.write(json.dumps({"type": kind, "object": item}).encode() + b"\n")
        handler.wfile.flush()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _status(self, handler: BaseHTTPRequestHandler, code: int, reason: str, message: str) -> int:
        self._send(handler, code, {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                                   "message": message, "reason": reason, "code": code})
        return code

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> KubeAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
