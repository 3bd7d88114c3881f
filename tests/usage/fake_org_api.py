"""A fake of the provider's organization usage and costs API: a real HTTP server on
127.0.0.1 (http.server in a thread) that checks the admin key, paginates, and records
every request it receives.

Amounts are written into the JSON exactly as given (Decimal → number literal), the way
the provider writes `"value": 0.06`, so the importer's float handling is what is tested.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_RAW = re.compile(r'"__num__([-0-9.eE+]+)__"')


def _dumps(payload: Any) -> bytes:
    def raw(value):
        if isinstance(value, Decimal):
            return f"__num__{value}__"
        raise TypeError(type(value).__name__)

    return _RAW.sub(r"\1", json.dumps(payload, default=raw)).encode()


def day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def usage_result(
    project_id: str | None,
    model: str,
    *,
    requests: int,
    input_tokens: int,
    output_tokens: int,
    cached: int = 0,
) -> dict:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_cached_tokens": cached,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": requests,
        "project_id": project_id,
        "user_id": None,
        "api_key_id": None,
        "model": model,
        "batch": None,
    }


def cost_result(project_id: str | None, line_item: str, value: str) -> dict:
    return {
        "object": "organization.costs.result",
        "amount": {"value": Decimal(value), "currency": "usd"},
        "line_item": line_item,
        "project_id": project_id,
    }


@dataclass
class Recorded:
    path: str
    query: dict[str, list[str]]
    authorization: str


@dataclass
class FakeOrgApi:
    """usage / costs: {day: [result, …]}; every day in them becomes one bucket."""

    admin_key: str
    usage: dict[date, list[dict]] = field(default_factory=dict)
    costs: dict[date, list[dict]] = field(default_factory=dict)
    page_size: int = 1  # buckets per page, so two days already make two pages
    fail_next: list[int] = field(default_factory=list)  # statuses to answer first
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def start(self) -> FakeOrgApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status, body = fake._answer(self.path, self.headers.get("Authorization", ""))
                data = _dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeOrgApi:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # The API ---------------------------------------------------------------------

    def _answer(self, raw_path: str, authorization: str) -> tuple[int, dict]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        with self._lock:
            self.requests.append(Recorded(parts.path, query, authorization))
            injected = self.fail_next.pop(0) if self.fail_next else None
        if authorization != f"Bearer {self.admin_key}":
            # Like a careless relay, echo the key: the importer must not log this body.
            shown = authorization.removeprefix("Bearer ")
            return 401, _error(f"Incorrect API key provided: {shown}", "invalid_api_key")
        if injected:
            return injected, _error("The server had an error", "server_error")
        if parts.path == "/v1/organization/usage/completions":
            return self._page(
                query,
                self.usage,
                {"project_id", "model"},
                31,
                "organization.usage.completions.result",
            )
        if parts.path == "/v1/organization/costs":
            return self._page(
                query, self.costs, {"project_id", "line_item"}, 180, "organization.costs.result"
            )
        return 404, _error(f"Unknown path {parts.path}", "not_found")

    def _page(
        self,
        query: dict[str, list[str]],
        source: dict[date, list[dict]],
        group_by: set[str],
        max_limit: int,
        kind: str,
    ) -> tuple[int, dict]:
        try:
            start = int(query["start_time"][0])
            end = int(query["end_time"][0]) if "end_time" in query else 2**40
            limit = int(query.get("limit", ["7"])[0])
            offset = int(query.get("page", ["page_0"])[0].removeprefix("page_"))
        except (KeyError, ValueError):
            return 400, _error("start_time, end_time, limit or page is invalid", "invalid")
        asked = {g for value in query.get("group_by", []) for g in value.split(",")}
        if query.get("bucket_width") != ["1d"] or asked != group_by or not 1 <= limit <= max_limit:
            return 400, _error("bucket_width, group_by or limit is invalid", "invalid")
        days = sorted(d for d in source if start <= day_start(d) < end)
        size = min(limit, self.page_size)
        chunk = days[offset : offset + size]
        more = offset + size < len(days)
        data = [
            {
                "object": "bucket",
                "start_time": day_start(d),
                "end_time": day_start(d) + 86400,
                "results": [{**r, "object": kind} for r in source[d]],
            }
            for d in chunk
        ]
        return 200, {
            "object": "page",
            "data": data,
            "has_more": more,
            "next_page": f"page_{offset + size}" if more else None,
        }


def _error(message: str, code: str) -> dict:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
