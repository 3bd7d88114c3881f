"""The OpenAI-compatible gateway: a lean ASGI app mounted at /v1/ beside Django.

Per call: token → route (cached), forward with the provider key over one shared
aiohttp session, relay the answer as it arrives, read the usage, and push one
CallRecord to the Redis stream. No ORM writes, sessions or templates on this path.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import random
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from django.conf import settings
from yarl import URL

from usage import hardlimit, ratelimit
from usage.batching import RecordBatcher
from usage.gateway_auth import Route, RouteCache
from usage.records import CallRecord
from usage.sse import StreamUsage

log = logging.getLogger("keymeter.gateway")

USAGE_ENDPOINTS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"}
)
# Endpoints whose streams report usage only when stream_options.include_usage is set.
STREAM_OPTIONS_ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/completions"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Never forwarded upstream: hop-by-hop headers, the client's km_ token, and
# accept-encoding (keymeter reads the body to find the usage).
DROP_REQUEST_HEADERS = frozenset(
    {b"host", b"authorization", b"content-length", b"connection", b"keep-alive",
     b"transfer-encoding", b"te", b"upgrade", b"proxy-authorization", b"cookie",
     b"accept-encoding", b"expect", b"x-forwarded-for", b"x-real-ip"}
)
DROP_RESPONSE_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
     "set-cookie", "server", "date", "upgrade", "trailer"}
)


def error_body(message: str, type_: str, code: str | None = None,
               param: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def retry_delay(attempt: int, retry_after: str | None) -> float | None:
    """Seconds to wait before retry number `attempt` (0-based), or None to give up.

    Full jitter: uniform(0, min(cap, base × 2^attempt)). A Retry-After longer than
    GATEWAY_RETRY_MAX_WAIT is not waited out: the client gets the 429 at once.
    """
    if retry_after:
        try:
            wait = float(retry_after)
        except ValueError:
            wait = None
        if wait is not None:
            return wait if wait <= settings.GATEWAY_RETRY_MAX_WAIT else None
    ceiling = min(settings.GATEWAY_RETRY_MAX_WAIT, settings.GATEWAY_RETRY_BASE * 2**attempt)
    return random.uniform(0, ceiling)


class Gateway:
    def __init__(self) -> None:
        self.routes = RouteCache()
        self.batcher = RecordBatcher()
        self._urls: dict[tuple[str, str], URL] = {}
        # Projects seen without a hard limit, until (monotonic time): saves a Redis round
        # trip per call. A limit switched on takes effect within this long.
        self.no_hard_limit: dict[int, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def session(self) -> aiohttp.ClientSession:
        # One session per process; a session is bound to its event loop, so a second
        # loop (a test server in another thread) gets its own.
        loop = asyncio.get_running_loop()
        if self._session_loop is not loop:
            self._session, self._session_loop = None, loop
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=settings.GATEWAY_MAX_CONNECTIONS, ttl_dns_cache=300,
                keepalive_timeout=30,
            )
            timeout = aiohttp.ClientTimeout(
                total=None, connect=settings.GATEWAY_CONNECT_TIMEOUT,
                sock_read=settings.GATEWAY_READ_TIMEOUT,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def upstream_url(self, base_url: str, path: str, query: bytes) -> URL:
        """The provider URL for a gateway path. Parsed once per (base, path): yarl's
        parsing and quoting is a noticeable share of a call's CPU."""
        if query:
            return URL(f"{base_url}{path[3:]}?{query.decode('latin-1')}")
        key = (base_url, path)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) > 10_000:
                self._urls.clear()
            url = self._urls[key] = URL(base_url + path[3:])
        return url

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await Call(self, scope, receive, send).handle()

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Django and friends leave ~10⁶ long-lived objects; frozen, the cyclic GC
                # stops rescanning them, which otherwise stalls the loop for tens of ms.
                gc.collect()
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.batcher.drain()
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


class Call:
    """One request through the gateway."""

    def __init__(self, gateway: Gateway, scope, receive, send) -> None:
        self.gateway = gateway
        self.scope = scope
        self.receive = receive
        self._send = send
        self.started = time.monotonic()
        self.created = time.time()
        self.request_id = "kmg_" + uuid.uuid4().hex
        self.disconnected = False
        self.record: CallRecord | None = None
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self.hold: hardlimit.Hold | None = None

    async def send(self, message: dict[str, Any]) -> None:
        if self.disconnected:
            return
        try:
            await self._send(message)
        except OSError:  # the client went away
            self.disconnected = True

    async def reply_error(self, status: int, message: str, type_: str,
                          code: str | None = None, headers: list | None = None) -> None:
        body = error_body(message, type_, code)
        await self.send({
            "type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-keymeter-request-id", self.request_id.encode()),
                        *(headers or [])],
        })
        await self.send({"type": "http.response.body", "body": body})

    async def read_body(self) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > settings.GATEWAY_MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def handle(self) -> None:
        path = self.scope["path"]
        token = ""
        for name, value in self.scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                token = token.strip() if scheme.lower() == "bearer" else ""
                break
        if not token:
            return await self.reply_error(
                401, "You didn't provide an API key. Send your keymeter gateway token "
                "(km_…) as 'Authorization: Bearer km_…'.", "invalid_request_error",
                "invalid_api_key")
        route = await self.gateway.routes.resolve(token)
        if route is None:
            shown = f"{token[:5]}…{token[-4:]}" if len(token) > 12 else "***"
            return await self.reply_error(
                401, f"Incorrect API key provided: {shown}. Use an active keymeter gateway "
                "token (km_…).", "invalid_request_error", "invalid_api_key")
        body = await self.read_body()
        if body is None:
            if self.disconnected:
                return
            return await self.reply_error(
                413, "Request body too large.", "invalid_request_error", "request_too_large")
        self.record = CallRecord(
            request_id=self.request_id, created_at=self.created,
            project_id=route.project_id, environment_id=route.environment_id,
            provider_key_id=route.key_id, gateway_token_id=route.token_id, endpoint=path,
        )
        limited = route.requests_per_minute or route.tokens_per_minute
        try:
            if limited and not await self.within_rate_limit(route):
                return
            await self.proxy(route, path, body)
        finally:
            self.record.latency_ms = int((time.monotonic() - self.started) * 1000)
            if self.hold is not None:
                await _quietly(self.settle_budget())
            self.gateway.batcher.add(self.record)
            if route.tokens_per_minute:
                await _quietly(ratelimit.add_tokens(
                    route.token_id, self.record.input_tokens + self.record.output_tokens))

    async def within_rate_limit(self, route: Route) -> bool:
        try:
            verdict = await ratelimit.check(
                route.token_id, route.requests_per_minute, route.tokens_per_minute)
        except Exception as exc:  # Redis trouble must not take the gateway down
            log.warning("rate limit check skipped: %s", type(exc).__name__)
            return True
        self.extra_headers = verdict.headers
        if verdict.allowed:
            return True
        assert self.record is not None
        self.record.status_code, self.record.error_type = 429, "rate_limit_exceeded"
        limit = (route.requests_per_minute if verdict.reason == "requests"
                 else route.tokens_per_minute)
        await self.reply_error(
            429, f"Rate limit reached for this keymeter token on {verdict.reason} per minute: "
            f"limit {limit}. Please try again in a moment.", verdict.reason,
            "rate_limit_exceeded", headers=verdict.headers)
        return False

    async def proxy(self, route: Route, path: str, body: bytes) -> None:
        record = self.record
        assert record is not None
        strip_usage = False
        payload: Any = {}
        if self.scope["method"] == "POST" and body and _is_json(self.scope["headers"]):
            try:
                payload = _loads(body)
            except ValueError:
                record.status_code, record.error_type = 400, "invalid_json"
                return await self.reply_error(
                    400, "We could not parse the JSON body of your request. (HINT: This "
                    "likely means you aren't using your HTTP library correctly.)",
                    "invalid_request_error")
            if isinstance(payload, dict):
                model = payload.get("model")
                record.model = model[:100] if isinstance(model, str) else ""
                record.stream = payload.get("stream") is True
                if record.stream and path in STREAM_OPTIONS_ENDPOINTS:
                    options = payload.get("stream_options")
                    if not (isinstance(options, dict) and options.get("include_usage")):
                        payload["stream_options"] = {**(options if isinstance(options, dict)
                                                        else {}), "include_usage": True}
                        body = orjson.dumps(payload)
                        strip_usage = True
        if route.secret is None:
            record.status_code, record.error_type = 403, "no_provider_key"
            return await self.reply_error(
                403, f"Environment '{route.environment_name}' of project "
                f"'{route.project_name}' has no active provider key. An admin can add one "
                "in keymeter.", "invalid_request_error", "no_provider_key")
        if path in USAGE_ENDPOINTS and self.scope["method"] == "POST":
            if not await self.hold_budget(route, payload, body, path):
                return
        response = await self.forward(route, path, body)
        if response is None:
            return
        try:
            await self.relay(response, path, strip_usage)
        finally:
            response.release()

    async def forward(self, route: Route, path: str, body: bytes):
        record = self.record
        assert record is not None and route.base_url is not None
        query = self.scope.get("query_string", b"")
        url = self.gateway.upstream_url(route.base_url, path, query)
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in self.scope["headers"]
            if name not in DROP_REQUEST_HEADERS
        }
        headers["Authorization"] = f"Bearer {route.secret}"
        session = self.gateway.session()
        attempts = settings.GATEWAY_MAX_RETRIES + 1
        for attempt in range(attempts):
            try:
                response = await session.request(
                    self.scope["method"], url, data=body or None, headers=headers,
                    allow_redirects=False)
            except (TimeoutError, aiohttp.ClientError) as exc:
                delay = retry_delay(attempt, None) if attempt + 1 < attempts else None
                if delay is None:
                    log.warning("upstream unreachable for %s: %s", path, type(exc).__name__)
                    record.status_code, record.error_type = 502, "upstream_unreachable"
                    await self.reply_error(
                        502, "keymeter could not reach the provider "
                        f"({type(exc).__name__}). Try again later.", "server_error",
                        "upstream_unreachable")
                    return None
                await asyncio.sleep(delay)
                continue
            if response.status in RETRY_STATUSES and attempt + 1 < attempts:
                delay = retry_delay(attempt, response.headers.get("retry-after"))
                if delay is not None and response.headers.get("x-should-retry") != "false":
                    response.release()
                    await asyncio.sleep(delay)
                    continue
            return response
        return None

    async def relay(self, response: aiohttp.ClientResponse, path: str, strip_usage: bool) -> None:
        record = self.record
        assert record is not None
        record.status_code = response.status
        record.ttfb_ms = int((time.monotonic() - self.started) * 1000)
        # keymeter's own rate-limit headers replace the provider's, never duplicate them.
        drop = DROP_RESPONSE_HEADERS | {name.decode() for name, _ in self.extra_headers}
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.items()
            if name.lower() not in drop
        ]
        headers.append((b"x-keymeter-request-id", self.request_id.encode()))
        headers.extend(self.extra_headers)
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            return await self.relay_stream(response, headers, strip_usage)
        data = await response.read()
        headers.append((b"content-length", str(len(data)).encode()))
        await self.send({"type": "http.response.start", "status": response.status,
                         "headers": headers})
        await self.send({"type": "http.response.body", "body": data})
        if "json" in content_type and (path in USAGE_ENDPOINTS or response.status >= 400):
            _read_json_outcome(record, data)

    async def relay_stream(self, response, headers, strip_usage: bool) -> None:
        record = self.record
        assert record is not None
        capture = StreamUsage(strip_usage)
        watcher = asyncio.ensure_future(self._wait_for_disconnect())
        await self.send({"type": "http.response.start", "status": response.status,
                         "headers": headers})
        try:
            async for chunk in response.content.iter_any():
                out = capture.feed(chunk)
                if out:
                    await self.send({"type": "http.response.body", "body": out,
                                     "more_body": True})
                if self.disconnected:
                    record.error_type = "client_disconnected"
                    break
            else:
                await self.send({"type": "http.response.body", "body": capture.finish()})
        except (TimeoutError, aiohttp.ClientError) as exc:
            record.error_type = "upstream_stream_broken"
            log.warning("upstream stream broke: %s", type(exc).__name__)
            await self.send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
        if capture.model:
            record.model = capture.model[:100]
        if capture.usage:
            record.add_usage(capture.usage)

    async def hold_budget(self, route: Route, payload: Any, body: bytes, path: str) -> bool:
        """Reserve the call's worst case against a hard limit; False if refused."""
        record = self.record
        assert record is not None
        unlimited_until = self.gateway.no_hard_limit.get(route.project_id)
        if unlimited_until is not None and unlimited_until > time.monotonic():
            return True
        try:
            book = await hardlimit.prices.get()
            estimate = hardlimit.estimate_units(
                book, record.model, payload if isinstance(payload, dict) else {}, len(body),
                path)
            outcome = await hardlimit.reserve(route.project_id, self.request_id, estimate)
        except Exception as exc:  # Redis trouble must not take the gateway down
            log.warning("hard limit check skipped: %s", type(exc).__name__)
            return True
        if isinstance(outcome, hardlimit.Refusal):
            record.status_code, record.error_type = 429, "budget_exceeded"
            await self.reply_error(
                429, f"Project '{route.project_name}' has reached its hard monthly budget "
                f"limit of ${outcome.limit:,.2f} (spent ${outcome.spent:,.2f} this month). "
                "An admin can raise the limit in keymeter.", "insufficient_quota",
                "budget_exceeded", headers=[(b"x-should-retry", b"false")])
            return False
        if outcome is None:
            self.gateway.no_hard_limit[route.project_id] = (
                time.monotonic() + settings.GATEWAY_BUDGET_CACHE_SECONDS)
        self.hold = outcome
        return True

    async def settle_budget(self) -> None:
        record, hold = self.record, self.hold
        assert record is not None and hold is not None
        book = await hardlimit.prices.get()
        try:
            cost = book.cost(record.model, datetime.now(UTC),
                             input_tokens=record.input_tokens,
                             cached_input_tokens=record.cached_input_tokens,
                             output_tokens=record.output_tokens)
        except (ValueError, TypeError):
            cost = None
        await hardlimit.settle(hold, hardlimit.to_units(cost) if cost else 0)

    async def _wait_for_disconnect(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return


async def _quietly(awaitable) -> None:
    """Bookkeeping after the answer has gone out: a Redis hiccup only costs a warning."""
    try:
        await awaitable
    except Exception as exc:
        log.warning("%s skipped: %s", awaitable.__qualname__, type(exc).__name__)


def _loads(data: bytes) -> Any:
    """orjson for speed; the standard library for what orjson refuses (integers past
    64 bits are valid JSON). Raises ValueError for malformed JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _is_json(headers) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return b"json" in value
    return True  # the SDK always sends JSON; a missing header is not a reason to refuse


_USAGE_KEY = re.compile(rb'"usage"\s*:\s*')
_MODEL_KEY = re.compile(rb'"model"\s*:\s*')
_DECODER = json.JSONDecoder()


def _value_after(pattern: re.Pattern, data: bytes, last: bool) -> Any:
    """The JSON value after a key, without parsing the whole document.

    A key pattern can only match a real key: inside a JSON string its quotes would be
    escaped. The top-level usage is the last "usage" key of a response body, and the
    top-level model the first "model" key.
    """
    matches = list(pattern.finditer(data)) if last else [pattern.search(data)]
    match = matches[-1] if matches and matches[-1] else None
    if match is None:
        return None
    try:
        return _DECODER.raw_decode(data[match.end():match.end() + 4096].decode("utf-8",
                                                                               "replace"))[0]
    except ValueError:
        return None


def _read_json_outcome(record: CallRecord, data: bytes) -> None:
    if record.status_code >= 400:
        try:
            payload = _loads(data)
        except ValueError:
            return
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            record.error_type = str(error.get("code") or error.get("type") or "")[:100]
        return
    # Bodies can be large (embeddings: thousands of floats per input): read only
    # the two values keymeter needs.
    usage = _value_after(_USAGE_KEY, data, last=True)
    model = _value_after(_MODEL_KEY, data, last=False)
    if isinstance(model, str) and model:
        record.model = model[:100]
    if isinstance(usage, dict):
        record.add_usage(usage)


gateway = Gateway()
