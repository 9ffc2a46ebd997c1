"""Request bodies bounded before any handler sees them: refused at once by their declared length,
counted as they stream in (413 the moment they pass SMAPX_MAX_BODY_BYTES, without reading the
rest), given SMAPX_BODY_TIMEOUT_SECONDS in all to arrive (408 past it, so a client trickling a
body holds no connection for ever), and a JSON body nested deeper than SMAPX_MAX_JSON_DEPTH
refused with 422 instead of exhausting a parser's recursion. The depth is measured on a worker
thread, in numpy passes over the brackets and quotes (a 2 MB body: ~8 ms, against ~140 ms
for a regex that blanks strings, which held the event loop all that time). Large bodies are
parsed one at a time (`parsing`): a parser holds the interpreter lock for its whole call, and
four at once would hold it, and the event loop with it, four times as long."""

import asyncio
import threading
from contextlib import nullcontext

import numpy as np
from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import problem

DEPTH_STEP = np.zeros(256, np.int8)
DEPTH_STEP[[ord("["), ord("{")]] = 1
DEPTH_STEP[[ord("]"), ord("}")]] = -1
QUOTE, BACKSLASH = ord('"'), ord("\\")
LARGE_BODY_BYTES = 64_000
LARGE_BODY = threading.Lock()
DISCONNECTED = object()  # what read() answers when the client went away


def parsing(body: bytes):
    """Held while a worker thread parses or measures a body: one large body at a time."""
    return LARGE_BODY if len(body) > LARGE_BODY_BYTES else nullcontext()


def string_quotes(text: np.ndarray) -> np.ndarray:
    """Positions of the quotes that open or close a JSON string: those preceded by an even
    run of backslashes (`\\"` is a quote inside a string, `\\\\"` ends one)."""
    quotes = np.flatnonzero(text == QUOTE)
    if not quotes.size or not (text == BACKSLASH).any():
        return quotes
    index = np.arange(text.size)
    last_plain = np.maximum.accumulate(np.where(text != BACKSLASH, index, -1))
    before = np.where(quotes > 0, quotes - 1, 0)
    run = np.where(quotes > 0, before - last_plain[before], 0)
    return quotes[run % 2 == 0]


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets in strings ignored)."""
    with parsing(body):
        return measure_depth(np.frombuffer(body, np.uint8))


def measure_depth(text: np.ndarray) -> int:
    """Depth over the brackets alone: a bracket is inside a string when an odd number of string
    quotes come before it (a 2 MB body of points: ~8 ms, against ~25 ms for a pass that masks
    every byte inside strings)."""
    brackets = np.flatnonzero(DEPTH_STEP[text])
    steps = DEPTH_STEP[text[brackets]]
    quotes = string_quotes(text)
    if quotes.size:
        steps[np.searchsorted(quotes, brackets) % 2 == 1] = 0
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


class BodyLimit:
    """ASGI middleware: reads a body in full (it is bounded), checks it, then replays it."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int, timeout: float = 30.0):
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.refuse(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.timeout):
                body = await self.read(receive)
        except TimeoutError:
            response = problem(
                408,
                f"body: not received within {self.timeout:g} s",
                {"connection": "close"},
                parameter="body",
            )
            await response(scope, receive, send)
            return
        if body is None:
            await self.refuse(scope, receive, send)
            return
        if body is DISCONNECTED:
            return
        if b"json" in headers.get(b"content-type", b"") and await self.too_deep(body):
            response = problem(
                422, f"body: JSON nested deeper than {self.max_depth} levels", parameter="body"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replay(body), send)

    async def read(self, receive: Receive) -> bytes | object | None:
        """The whole body; None past the limit, DISCONNECTED if the client went away."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return DISCONNECTED
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def too_deep(self, body: bytes) -> bool:
        if body.count(b"[") + body.count(b"{") <= self.max_depth:
            return False
        return await run_in_threadpool(json_depth, body) > self.max_depth

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
