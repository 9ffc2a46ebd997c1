"""Request bodies bounded before any handler sees them: refused at once by their declared length,
counted as they stream in (413 the moment they pass SMAPX_MAX_BODY_BYTES, without reading the
rest), and a JSON body nested deeper than SMAPX_MAX_JSON_DEPTH refused with 422 instead of
exhausting the parser's recursion."""

import re

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import problem

STRINGS = re.compile(rb'"(?:\\.|[^"\\])*"')
DEPTH_STEP = np.zeros(256, np.int8)
DEPTH_STEP[[ord("["), ord("{")]] = 1
DEPTH_STEP[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets in strings ignored)."""
    steps = DEPTH_STEP[np.frombuffer(STRINGS.sub(b'""', body), np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


class BodyLimit:
    """ASGI middleware: reads a body in full (it is bounded), checks it, then replays it."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int):
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.refuse(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if b"json" in headers.get(b"content-type", b"") and json_depth(body) > self.max_depth:
            response = problem(
                422, f"body: JSON nested deeper than {self.max_depth} levels", parameter="body"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replay(body), send)

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            f"body: over {self.max_bytes} bytes, the most one request may send; "
            "split it, or use a bulk job",
            parameter="body",
            limit=self.max_bytes,
        )
        response.headers["connection"] = "close"
        await response(scope, receive, send)


def replay(body: bytes) -> Receive:
    """A receive callable that hands the handler the body already read, then waits."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
