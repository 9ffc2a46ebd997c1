"""Requests per client per sliding minute (SMAPX_RATE_LIMIT_PER_MINUTE; 0 = off): past the limit
the API answers 429 with Retry-After.

A client is its API key when it sends one the service knows (SMAPX_API_KEYS, SMAPX_ADMIN_API_KEY),
else its address: the peer's, or, when the peer is a trusted proxy (SMAPX_TRUSTED_PROXIES), the
right-most X-Forwarded-For address that is not one, so a client cannot buy a fresh quota by
inventing a header: an unknown key counts against the address that sent it. The window slides:
the count is this minute's requests plus the last minute's weighted by how much of it is still
inside the window, so no burst at a minute's boundary passes twice the quota. Counts live in
Redis when one is configured (shared by every API process), else in this process; if Redis stops
answering the process counts alone until it answers again.
"""

import hashlib
import ipaddress
import logging
import time

import redis
from starlette.types import ASGIApp, Receive, Scope, Send

from service.problems import problem

WINDOW = 60
REDIS_RETRY_SECONDS = 30.0
log = logging.getLogger(__name__)


def networks(proxies: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(p, strict=False) for p in proxies]


def trusted(address: str, proxies) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(scope: Scope, proxies) -> str:
    """The client's address, believing X-Forwarded-For only as far as trusted proxies reach."""
    peer = scope["client"][0] if scope.get("client") else "-"
    if not proxies or not trusted(peer, proxies):
        return peer
    forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
    hops = [h.strip() for h in ",".join(forwarded).split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop, proxies):
            return hop
    return peer


def key_digest(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def client_of(scope: Scope, proxies, keys: frozenset[str] = frozenset()) -> str:
    """Who a request counts against: its key (digested) if it is one of `keys` (digests of the
    service's keys), else its address."""
    for name, value in scope["headers"]:
        if name == b"x-api-key" and value and key_digest(value) in keys:
            return "key:" + key_digest(value)
    return "ip:" + client_address(scope, proxies)


def estimate(previous: int, current: int, elapsed: float) -> float:
    """Requests in the sliding minute ending now."""
    return previous * (1 - elapsed / WINDOW) + current


def retry_after(previous: int, current: int, elapsed: float, limit: int) -> int:
    """Whole seconds until one more request fits in the sliding window."""
    for wait in range(1, 2 * WINDOW + 1):
        later = elapsed + wait
        if later < WINDOW:
            count = estimate(previous, current, later)
        else:
            count = estimate(current, 0, later - WINDOW) if later < 2 * WINDOW else 0
        if count < limit:
            return wait
    return 2 * WINDOW


class Counter:
    """Per-client counts of the current and the previous fixed minute."""

    def __init__(self, redis_url: str | None):
        self.local: dict[tuple[str, int], int] = {}
        self.window = 0
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=0.5) if redis_url else None
        self.redis_down_until = 0.0

    def count(self, client: str, window: int) -> tuple[int, int]:
        """(previous, current) counts, this request included."""
        if self.redis is not None and time.monotonic() >= self.redis_down_until:
            try:
                return self.count_shared(client, window)
            except redis.RedisError as exc:
                log.warning("rate limit counts in this process only: %s", exc)
                self.redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        return self.count_local(client, window)

    def count_shared(self, client: str, window: int) -> tuple[int, int]:
        key = f"smapx:rate:{client}:"
        with self.redis.pipeline() as pipe:
            pipe.incr(key + str(window))
            pipe.expire(key + str(window), 2 * WINDOW)
            pipe.get(key + str(window - 1))
            current, _, previous = pipe.execute()
        return int(previous or 0), int(current)

    def count_local(self, client: str, window: int) -> tuple[int, int]:
        if window != self.window:  # a new minute: forget all but the last one
            self.local = {k: n for k, n in self.local.items() if k[1] >= window - 1}
            self.window = window
        current = self.local.get((client, window), 0) + 1
        self.local[(client, window)] = current
        return self.local.get((client, window - 1), 0), current


class RateLimit:
    """ASGI middleware over /v1 only; the page, its assets and /healthz are never limited."""

    def __init__(
        self,
        app: ASGIApp,
        per_minute: int,
        trusted_proxies: list[str] | None = None,
        redis_url: str | None = None,
        api_keys: list[str] | None = None,
    ):
        self.app = app
        self.per_minute = per_minute
        self.proxies = networks(trusted_proxies or [])
        self.keys = frozenset(key_digest(k.encode()) for k in api_keys or [] if k)
        self.counter = Counter(redis_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/") or not self.per_minute:
            await self.app(scope, receive, send)
            return
        now = time.time()
        window, elapsed = int(now // WINDOW), now % WINDOW
        client = client_of(scope, self.proxies, self.keys)
        previous, current = self.counter.count(client, window)
        if estimate(previous, current, elapsed) <= self.per_minute:
            await self.app(scope, receive, send)
            return
        retry = retry_after(previous, current, elapsed, self.per_minute)
        who = "this key" if client.startswith("key:") else client.removeprefix("ip:")
        response = problem(
            429,
            f"more than {self.per_minute} requests a minute from {who}; retry in {retry} s",
            headers={"Retry-After": str(retry)},
            parameter=None,
            limit=self.per_minute,
        )
        await response(scope, receive, send)
