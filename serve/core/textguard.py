"""NUL characters are refused in every text input (422): PostgreSQL cannot store them in
text or JSON columns, and no name, id or date ever holds one.

One ASGI middleware checks the path, the query string and JSON bodies before any route
runs; multipart fields and filenames are checked where forms are parsed (core/uploads).
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NUL = "\x00"


def nul_message(where: str) -> str:
    """The 422 detail naming where the NUL was found."""
    return f"{where}: text must not contain the NUL character (\\u0000)"


def holds_nul(value: Any) -> bool:
    """True when a decoded JSON value has a NUL in any string or key."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(NUL in k or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    return False


def _json_body_has_nul(body: bytes) -> bool:
    """Whether a JSON body's strings hold a NUL (escaped as \\u0000, or raw)."""
    if b"\\u0000" not in body and b"\x00" not in body:
        return False  # the common case: no parse here
    try:
        return holds_nul(json.loads(body))
    except (ValueError, UnicodeDecodeError):
        return False  # not JSON: the route answers its own 422


def _is_json(scope: Scope) -> bool:
    """A request whose body FastAPI will parse as JSON."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class RefuseNulMiddleware:
    """422 {"error": "invalid_input"} for a NUL in the path, query string or a JSON body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check, then pass the request on (a JSON body is replayed as it was read)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = unquote_plus(scope.get("query_string", b"").decode("latin-1"))
        if NUL in scope.get("path", ""):
            await _refuse(send, nul_message("path"))
            return
        if NUL in query:
            await _refuse(send, nul_message("query string"))
            return
        if scope.get("method") in ("POST", "PUT", "PATCH", "DELETE") and _is_json(scope):
            messages = await _read_body(receive)
            body = b"".join(m.get("body", b"") for m in messages)
            if _json_body_has_nul(body):
                await _refuse(send, nul_message("JSON body"))
                return
            receive = _replay(messages, receive)
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> list[Message]:
    """Every message of the request body (JSON bodies are small)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that hands out the read messages again, then the real channel."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _refuse(send: Send, detail: str) -> None:
    """The service's error body, 422."""
    body = json.dumps({"error": "invalid_input", "detail": detail}).encode()
    await send({"type": "http.response.start", "status": 422,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
