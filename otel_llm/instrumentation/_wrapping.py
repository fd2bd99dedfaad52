"""The SDK-independent half of an instrumentor: one wrapt wrapper around the Stainless client's
``request`` method, where every API request of the openai and anthropic SDKs passes, and the
handling of what it returns (parsed objects, streams, raw and streaming-response variants).

Wrapping ``request`` instead of each resource method is what catches the generic
``client.post("/chat/completions", ...)`` (LiteLLM), the beta resources (``client.beta.messages``)
and ``with_raw_response`` methods bound before ``instrument()`` was called, with the request body
in hand. Requests to other paths pass through after one dictionary lookup.

An instrumentor supplies ``routes`` (path -> kind) and ``plan(kind, client, options, stream) ->
Plan``: the started call, the request options to send, and how to read a parsed response
(``record``) or a streamed item (``stream_handler``).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import wrapt
from opentelemetry import context as otel_context

from ..recorder import LLMCall, current_call, report_internal_error
from ..streaming import AsyncStreamProxy, SyncStreamProxy

RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


class Plan:
    """One intercepted request: the recorder call plus what the instrumentor needs after it."""

    __slots__ = ("call", "options", "body", "kind", "stream", "raw")

    def __init__(self, call: LLMCall, options: Any, body: Mapping[str, Any], kind: str, stream: bool) -> None:
        self.call = call
        self.options = options  # the request options to send (the caller's, or our copy)
        self.body = body
        self.kind = kind
        self.stream = stream
        headers = options.headers
        self.raw = headers.get(RAW_RESPONSE_HEADER) if type(headers) is dict else None

    def record(self, parsed: Any) -> None:
        """Put a parsed (or JSON) response on the call; the caller ends the call."""
        raise NotImplementedError

    def stream_handler(self) -> Callable[[Any], bool]:
        """``on_item(item) -> hide`` for the stream proxy."""
        raise NotImplementedError


PlanFactory = Callable[[str, Any, Any, Any, bool], Plan]


def route_of(routes: Mapping[str, str], url: Any) -> str | None:
    """The kind of request ``url`` is, by its path: exact first, then an absolute or prefixed URL."""
    kind = routes.get(url)
    if kind is not None or not isinstance(url, str):
        return kind
    path = url.partition("?")[0].rstrip("/")
    kind = routes.get(path)
    if kind is not None:
        return kind
    for route, kind in routes.items():
        if route[0] == "/" and path.endswith(route):
            return kind
    return None


def request_body(options: Any) -> dict[str, Any] | None:
    """The JSON body the SDK will send (``extra_body`` merged in), or None for non-JSON requests."""
    body = options.json_data
    if type(body) is not dict and not isinstance(body, Mapping):
        return None
    extra = options.extra_json
    return {**body, **extra} if extra else body  # type: ignore[return-value]


def _start(routes: Mapping[str, str], make_plan: PlanFactory, instance: Any, args: Any, kwargs: Any) -> Any:
    """(plan, args, kwargs) for a request we record, or None to pass it through."""
    try:
        options = args[1] if len(args) > 1 else kwargs["options"]
        if options.method != "post":
            return None
        kind = route_of(routes, options.url)
        if kind is None:
            return None
        body = request_body(options)
        if body is None:
            return None
        stream = kwargs.get("stream", False) is True
        plan = make_plan(kind, instance, options, body, stream)
    except Exception:
        report_internal_error("request")
        return None
    if plan.options is not options:
        if len(args) > 1:
            args = (args[0], plan.options, *args[2:])
        else:
            kwargs = {**kwargs, "options": plan.options}
    return plan, args, kwargs


def sync_request_wrapper(routes: Mapping[str, str], make_plan: PlanFactory) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        started = _start(routes, make_plan, instance, args, kwargs)
        if started is None:
            return wrapped(*args, **kwargs)
        plan, args, kwargs = started
        token = otel_context.attach(plan.call.context)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            fail_call(plan.call, exc)
            raise
        finally:
            otel_context.detach(token)
        return on_result(plan, result, is_async=False)

    return wrapper


def async_request_wrapper(routes: Mapping[str, str], make_plan: PlanFactory) -> Callable[..., Any]:
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        started = _start(routes, make_plan, instance, args, kwargs)
        if started is None:
            return await wrapped(*args, **kwargs)
        plan, args, kwargs = started
        token = otel_context.attach(plan.call.context)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            fail_call(plan.call, exc)
            raise
        finally:
            otel_context.detach(token)
        return on_result(plan, result, is_async=True)

    return wrapper


def request_patches(sdk: str) -> tuple[tuple[str, str, bool], ...]:
    """Where every API request of a Stainless SDK passes: (module, Class.method, is_async)."""
    module = f"{sdk}._base_client"
    return ((module, "SyncAPIClient.request", False), (module, "AsyncAPIClient.request", True))


def fail_call(call: LLMCall, exc: BaseException) -> None:
    """Fail the call; an HTTP error's response headers (rate limits on a 429) are kept."""
    if call.response_headers is None:
        response = getattr(exc, "response", None)
        call.response_headers = getattr(response, "headers", None)
    call.fail(exc)


def response_header_patches(sdk: str) -> tuple[tuple[str, str], ...]:
    """Where a Stainless SDK turns an HTTP response into a result: the place to read its headers."""
    module = f"{sdk}._base_client"
    return ((module, "SyncAPIClient._process_response"), (module, "AsyncAPIClient._process_response"))


def capture_response_headers(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """Keep the HTTP response headers on the call being sent (the async variant's coroutine is
    returned unawaited: the headers are read before it runs)."""
    call = current_call()
    if call is not None:
        response = kwargs.get("response")
        if response is not None:
            call.response_headers = response.headers
    return wrapped(*args, **kwargs)


def _is_http_response(result: Any) -> bool:
    """An httpx/httpx2 response returned as is (``cast_to=httpx.Response`` on the generic ``post``)."""
    for name in ("httpx2", "httpx"):  # whichever the SDKs are built on; both already imported by them
        module = sys.modules.get(name)
        if module is not None and isinstance(result, module.Response):
            return True
    return False


def on_result(plan: Plan, result: Any, is_async: bool) -> Any:
    """Record a returned object, or wrap it so that it finishes the call later."""
    try:
        if plan.raw and plan.raw != "stream" and not plan.stream:
            # with_raw_response: the body is in memory; read it as JSON, leave the SDK's parse() alone
            plan.record(result.http_response.json())
            plan.call.end()
        elif plan.raw == "true" and plan.stream:  # openai's legacy raw response: parse() is sync
            return LegacyRawResponse(result, plan)
        elif plan.raw:
            return (AsyncRawResponse if is_async else SyncRawResponse)(result, plan)
        elif _is_http_response(result):
            if not plan.stream:
                plan.record(result.json())
            plan.call.end()  # a streamed body the caller reads itself: its chunks are not seen
        elif plan.stream:
            return wrap_stream(plan, result, is_async)
        else:
            plan.record(result)
            plan.call.end()
    except Exception:
        report_internal_error(f"{plan.kind} response")
        plan.call.end()
    return result


def wrap_stream(plan: Plan, stream: Any, is_async: bool) -> Any:
    return (AsyncStreamProxy if is_async else SyncStreamProxy)(stream, plan.call, plan.stream_handler())


class LegacyRawResponse(wrapt.ObjectProxy):  # type: ignore[misc]
    """A raw response whose sync ``parse()`` returns our stream proxy (the same one every time)."""

    def __init__(self, response: Any, plan: Plan) -> None:
        super().__init__(response)
        self._self_plan = plan
        self._self_stream: Any = None
        # never parsed or closed: end it when collected (a parsed stream's proxy takes over)
        self._self_finalizer = weakref.finalize(self, plan.call.end)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = self.__wrapped__.parse(*args, **kwargs)
        return _parsed(self, parsed, bool(args or kwargs), is_async=hasattr(parsed, "__anext__"))


class SyncRawResponse(LegacyRawResponse):
    """``with_streaming_response`` (body unread) or a raw stream: finished by ``parse()`` or ``close()``."""

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        try:
            parsed = self.__wrapped__.parse(*args, **kwargs)
        except BaseException as exc:
            self._self_plan.call.fail(exc)
            raise
        return _parsed(self, parsed, bool(args or kwargs), is_async=False)

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_plan.call.end()  # raw lines may have been read to the end: not a stop we can see


class AsyncRawResponse(LegacyRawResponse):
    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        try:
            parsed = await self.__wrapped__.parse(*args, **kwargs)
        except BaseException as exc:
            self._self_plan.call.fail(exc)
            raise
        return _parsed(self, parsed, bool(args or kwargs), is_async=True)

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_plan.call.end()  # raw lines may have been read to the end: not a stop we can see


def _parsed(proxy: Any, parsed: Any, custom_type: bool, is_async: bool) -> Any:
    plan = proxy._self_plan
    try:
        if custom_type:  # parsed into a type of the caller's choosing: nothing we can read
            plan.call.end()
        elif plan.stream:
            if proxy._self_stream is None:
                proxy._self_stream = wrap_stream(plan, parsed, is_async)
                proxy._self_finalizer.detach()  # LiteLLM parses, then drops the raw response
            return proxy._self_stream
        else:
            plan.record(parsed)
            plan.call.end()
    except Exception:
        report_internal_error(f"{plan.kind} parse")
        plan.call.end()
    return parsed
