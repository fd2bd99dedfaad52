"""Transparent proxies around SDK stream objects that always finish the call.

The proxy behaves as the SDK's own stream (iteration, context manager,
``close()``, every other attribute) and finishes the :class:`LLMCall` exactly
once: ended when the stream is exhausted, failed when it raises mid-way, and
cancelled (``llm.call.cancelled``, not an error) when the consumer stops first:
closed early, left by ``break`` and garbage collected, or, for async streams,
its task cancelled.

``on_item(item) -> bool`` is the instrumentor's translation of one streamed
item into recorder calls; it returns True to hide the item from the caller
(the usage-only chunk we asked for on the caller's behalf).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import wrapt

from .recorder import LLMCall, report_internal_error

OnItem = Callable[[Any], bool]


class SyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    def __init__(self, stream: Any, call: LLMCall, on_item: OnItem) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_on_item = on_item
        weakref.finalize(self, call.cancel)  # dropped unfinished: the consumer stopped

    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                item = self.__wrapped__.__next__()
            except StopIteration:
                self._self_call.end()
                raise
            except BaseException as exc:
                self._self_call.fail(exc)
                raise
            try:
                if not self._self_on_item(item):
                    return item
            except Exception:
                report_internal_error("stream item handler")
                return item

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_call.cancel()  # a no-op once the stream ended

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_call.cancel()  # a no-op once the stream ended


class AsyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    def __init__(self, stream: Any, call: LLMCall, on_item: OnItem) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_on_item = on_item
        weakref.finalize(self, call.cancel)  # dropped unfinished: the consumer stopped

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                item = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                self._self_call.end()
                raise
            except BaseException as exc:  # CancelledError cancels (see LLMCall.fail)
                self._self_call.fail(exc)
                raise
            try:
                if not self._self_on_item(item):
                    return item
            except Exception:
                report_internal_error("stream item handler")
                return item

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_call.cancel()  # a no-op once the stream ended

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_call.cancel()  # a no-op once the stream ended
