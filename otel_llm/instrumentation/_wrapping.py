"""The SDK-independent half of an instrumentor: the wrapt wrappers around a ``create`` method and
the handling of what it returns (parsed objects, streams, raw and streaming-response variants).

An instrumentor supplies ``plan(kind, instance, kwargs) -> Plan``: the started call, the kwargs to
send, and how to read a parsed response (``record``) or a streamed item (``stream_handler``).
Both Stainless-generated SDKs (openai, anthropic) mark raw variants with the same header.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import wrapt
from opentelemetry import context as otel_context

from ..recorder import LLMCall, current_call, report_internal_error
from ..streaming import AsyncStreamProxy, SyncStreamProxy

RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


class Plan:
    """One wrapped call: the recorder call plus what the instrumentor needs after the request."""

    __slots__ = ("call", "kwargs", "kind", "stream", "raw")

    def __init__(self, call: LLMCall, kwargs: dict[str, Any], kind: str, stream: bool) -> None:
        self.call = call
        self.kwargs = kwargs
        self.kind = kind
        self.stream = stream
        headers = kwargs.get("extra_headers")
        self.raw = headers.get(RAW_RESPONSE_HEADER) if headers else None

    def record(self, parsed: Any) -> None:
        """Put a parsed (or JSON) response on the call; the caller ends the call."""
        raise NotImplementedError

    def stream_handler(self) -> Callable[[Any], bool]:
        """``on_item(item) -> hide`` for the stream proxy."""
        raise NotImplementedError


PlanFactory = Callable[[str, Any, dict[str, Any]], Plan]


def sync_wrapper(make_plan: PlanFactory, kind: str) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        try:
            plan = make_plan(kind, instance, kwargs)
        except Exception:
            report_internal_error(f"{kind} request")
            return wrapped(*args, **kwargs)
        token = otel_context.attach(plan.call.context)
        try:
            result = wrapped(*args, **plan.kwargs)
        except BaseException as exc:
            fail_call(plan.call, exc)
            raise
        finally:
            otel_context.detach(token)
        return on_result(plan, result, is_async=False)

    return wrapper


def async_wrapper(make_plan: PlanFactory, kind: str) -> Callable[..., Any]:
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        try:
            plan = make_plan(kind, instance, kwargs)
        except Exception:
            report_internal_error(f"{kind} request")
            return await wrapped(*args, **kwargs)
        token = otel_context.attach(plan.call.context)
        try:
            result = await wrapped(*args, **plan.kwargs)
        except BaseException as exc:
            fail_call(plan.call, exc)
            raise
        finally:
            otel_context.detach(token)
        return on_result(plan, result, is_async=True)

    return wrapper


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
        weakref.finalize(self, plan.call.end)  # never parsed or closed: end it when collected

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
            self._self_plan.call.end()


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
            self._self_plan.call.end()


def _parsed(proxy: Any, parsed: Any, custom_type: bool, is_async: bool) -> Any:
    plan = proxy._self_plan
    try:
        if custom_type:  # parsed into a type of the caller's choosing: nothing we can read
            plan.call.end()
        elif plan.stream:
            if proxy._self_stream is None:
                proxy._self_stream = wrap_stream(plan, parsed, is_async)
            return proxy._self_stream
        else:
            plan.record(parsed)
            plan.call.end()
    except Exception:
        report_internal_error(f"{plan.kind} parse")
        plan.call.end()
    return parsed
