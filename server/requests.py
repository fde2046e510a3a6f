"""Spec-invalid requests get an answer: a JSON-RPC InvalidParams error that says what is wrong.

pygls 2.1.1 fails to deserialize a request with a negative position or a missing field, logs it,
and never answers: the client waits forever. lsprotocol's converter also turns a string or a
float position ("3", 1.5) into an int silently. Here every request is checked before pygls
structures it (positions are integers from 0 to 2^31 - 1, not booleans, strings or floats), a
request pygls cannot structure is answered with InvalidParams, and a request about a document
the server does not know (not open, no such file) gets InvalidParams naming the URI.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.uris import to_fs_path

# LSP's uinteger.
MAX_UINTEGER = 2**31 - 1


class Answered:
    """What `structure_request` returns for a request it has answered with an error: the
    protocol's handle_message skips it."""

    jsonrpc = "answered"


ANSWERED = Answered()


def position_problem(value: Any, where: str = "$.params") -> str | None:
    """The first position in `value` (a request's raw params) that is not two LSP uintegers."""
    if isinstance(value, dict):
        if "line" in value and "character" in value:
            for key in ("line", "character"):
                number = value[key]
                if type(number) is not int or not 0 <= number <= MAX_UINTEGER:
                    return f"{where}.{key} is {number!r}; positions are integers from 0 to 2^31-1"
        for key, item in value.items():
            found = position_problem(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = position_problem(item, f"{where}[{index}]")
            if found:
                return found
    return None


def structure_request(
    data: dict[str, Any],
    structure: Callable[[dict[str, Any]], Any],
    answer: Callable[[Any, JsonRpcException], None],
) -> Any:
    """`structure(data)` for a top-level JSON-RPC message; a request that is spec-invalid is
    answered with `answer(id, error)` and ANSWERED returned."""
    is_request = "jsonrpc" in data and "id" in data and "method" in data
    if is_request:
        problem = position_problem(data.get("params"))
        if problem is not None:
            answer(data["id"], JsonRpcInvalidParams(f"{data['method']}: {problem}"))
            return ANSWERED
    try:
        return structure(data)
    except (JsonRpcInvalidParams, JsonRpcInternalError) as err:
        if not is_request:
            raise
        cause = err.__cause__
        detail = (
            "; ".join(cattrs.transform_error(cause))
            if isinstance(cause, cattrs.BaseValidationError)
            else str(cause or err)
        )
        answer(data["id"], JsonRpcInvalidParams(f"{data['method']}: invalid params: {detail}"))
        return ANSWERED


def unknown_document(params: Any, is_open: Callable[[str], bool]) -> str | None:
    """The URI of the document a request is about if the server does not know it (not open in
    the editor, no such file); None when it is known or the request names no document."""
    document = getattr(params, "text_document", None)
    uri = getattr(document, "uri", None)
    if not isinstance(uri, str) or is_open(uri):
        return None
    path = to_fs_path(uri) if uri.startswith("file:") else None
    if path and os.path.exists(path):
        return None
    return uri


def is_request(method: str) -> bool:
    """True for LSP requests (which get answers), False for notifications."""
    entry = types.METHOD_TO_TYPES.get(method)
    return entry is not None and entry[1] is not None


def check_document(params: Any, is_open: Callable[[str], bool]) -> None:
    """InvalidParams for a request about a document the server does not know."""
    uri = unknown_document(params, is_open)
    if uri is not None:
        raise JsonRpcInvalidParams(f"unknown document {uri}: not open and no such file")


def documents_checked(fn: Callable[..., Any], is_open: Callable[[str], bool]) -> Any:
    """`fn` (a request handler taking params first) answering InvalidParams for a request about
    a document the server does not know."""
    import functools
    import inspect

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(params: Any, *args: Any, **kwargs: Any) -> Any:
            check_document(params, is_open)
            return await fn(params, *args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(params: Any, *args: Any, **kwargs: Any) -> Any:
        check_document(params, is_open)
        return fn(params, *args, **kwargs)

    return wrapper
