"""Requests per client per minute (SMAPX_RATE_LIMIT_PER_MINUTE; 0 = off): past the limit the
API answers 429 with Retry-After. A fixed one-minute window per client address, counted in
this process: a burst up to the minute's quota passes, a sustained flood does not."""

import json
import time

from starlette.types import ASGIApp, Receive, Scope, Send


class RateLimit:
    """ASGI middleware over /v1 only; the page, its assets and /healthz are never limited."""

    def __init__(self, app: ASGIApp, per_minute: int):
        self.app = app
        self.per_minute = per_minute
        self.window = 0
        self.counts: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/") or not self.per_minute:
            await self.app(scope, receive, send)
            return
        now = time.time()
        window = int(now // 60)
        if window != self.window:
            self.window, self.counts = window, {}
        client = scope["client"][0] if scope.get("client") else "-"
        count = self.counts.get(client, 0) + 1
        self.counts[client] = count
        if count <= self.per_minute:
            await self.app(scope, receive, send)
            return
        retry = str(int(60 - now % 60) + 1)
        body = json.dumps(
            {
                "detail": f"more than {self.per_minute} requests a minute from "
                f"{client}; retry in {retry} s"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", retry.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
