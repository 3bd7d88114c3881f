"""A fake OpenAI API: a bare ASGI app, fast enough to benchmark against.

It answers like the provider does (usage objects, SSE streams with the usage chunk
only when `stream_options.include_usage` is set, OpenAI-shaped errors) and records
what it received so tests can check what keymeter forwarded. Behaviour is steered
by the request's model name:

  error-429        429 rate_limit_exceeded with Retry-After: 0 (every time)
  flaky-N          answers 503 N times, then succeeds (counter per model name)
  error-400        400 invalid_request_error
  slow-MS          waits MS milliseconds before answering
  unauthorized     401 invalid_api_key
  drip-MS          streams its chunks MS milliseconds apart

A bearer key in `rejected_keys` gets 401 invalid_api_key on every path (a revoked key).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

PROMPT_TOKENS = 100
COMPLETION_TOKENS = 300
CACHED_TOKENS = 0
REASONING_TOKENS = 0
CHUNK_TEXTS = ["Hel", "lo", " there", "!"]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeUpstream:
    received: list[Received] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    rejected_keys: set[str] = field(default_factory=set)
    record: bool = True
    usage: dict = field(default_factory=lambda: {
        "prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    })

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if self.record:
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.received.append(Received(scope["method"], path, headers, body))
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return await self._json(send, 400, _error("bad json", "invalid_request_error"))
        model = str(payload.get("model", ""))
        if self.rejected_keys:
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            if auth.removeprefix("Bearer ") in self.rejected_keys:
                return await self._json(send, 401, _error(
                    "Incorrect API key provided", "invalid_request_error", "invalid_api_key"))
        if path == "/v1/models":
            return await self._json(send, 200, {"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "openai"}]})
        problem = await self._misbehave(model, send)
        if problem:
            return
        if path == "/v1/chat/completions":
            if payload.get("stream"):
                include = bool((payload.get("stream_options") or {}).get("include_usage"))
                return await self._chat_stream(send, model, include)
            return await self._json(send, 200, self._chat(model))
        if path == "/v1/completions":
            return await self._json(send, 200, {
                "id": "cmpl-1", "object": "text_completion", "created": int(time.time()),
                "model": model, "choices": [{"text": "hi", "index": 0, "finish_reason": "stop",
                                             "logprobs": None}],
                "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                          "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}})
        if path == "/v1/embeddings":
            return await self._json(send, 200, {
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                "usage": {"prompt_tokens": 8, "total_tokens": 8}})
        if path == "/v1/responses":
            if payload.get("stream"):
                return await self._responses_stream(send, model)
            return await self._json(send, 200, self._response(model))
        return await self._json(send, 404, _error(f"Unknown path {path}", "invalid_request_error"))

    async def _misbehave(self, model: str, send) -> bool:
        if model == "error-429":
            await self._json(send, 429, _error("Rate limit reached", "requests",
                                               "rate_limit_exceeded"),
                             [(b"retry-after", b"0")])
            return True
        if model == "error-400":
            await self._json(send, 400, _error("Invalid value for 'messages'",
                                               "invalid_request_error", "invalid_value"))
            return True
        if model == "unauthorized":
            await self._json(send, 401, _error("Incorrect API key provided",
                                               "invalid_request_error", "invalid_api_key"))
            return True
        if model.startswith("flaky-"):
            seen = self.failures.get(model, 0)
            if seen < int(model.split("-")[1]):
                self.failures[model] = seen + 1
                await self._json(send, 503, _error("The server is overloaded", "server_error"))
                return True
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.split("-")[1]) / 1000)
        return False

    def _chat(self, model: str) -> dict:
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model or "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!",
                                                 "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": self.usage, "service_tier": "default", "system_fingerprint": "fp_fake",
        }

    def _response(self, model: str) -> dict:
        return {
            "id": "resp_fake", "object": "response", "created_at": int(time.time()),
            "status": "completed", "model": model or "gpt-4o-mini", "output": [
                {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Hello there!",
                              "annotations": []}]}],
            "usage": {"input_tokens": PROMPT_TOKENS,
                      "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
                      "output_tokens": COMPLETION_TOKENS,
                      "output_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
                      "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
        }

    async def _chat_stream(self, send, model: str, include_usage: bool) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model or "gpt-4o-mini", "service_tier": "default",
                "system_fingerprint": "fp_fake"}
        deltas = [{"role": "assistant", "content": ""}] + [{"content": t} for t in CHUNK_TEXTS]
        for _i, delta in enumerate(deltas):
            chunk = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": None}])
            if include_usage:
                chunk["usage"] = None
            await self._event(send, chunk)
            if model.startswith("drip-"):
                await asyncio.sleep(int(model.split("-")[1]) / 1000)
        last = dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None,
                                    "finish_reason": "stop"}])
        if include_usage:
            last["usage"] = None
        await self._event(send, last)
        if include_usage:
            await self._event(send, dict(base, choices=[], usage=self.usage))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _responses_stream(self, send, model: str) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        response = self._response(model)
        created = dict(response, status="in_progress", output=[], usage=None)
        events = [
            ("response.created", {"type": "response.created", "sequence_number": 0,
                                  "response": created}),
            ("response.output_text.delta", {"type": "response.output_text.delta",
                                            "sequence_number": 1, "item_id": "msg_1",
                                            "output_index": 0, "content_index": 0,
                                            "delta": "Hello there!"}),
            ("response.completed", {"type": "response.completed", "sequence_number": 2,
                                    "response": response}),
        ]
        for name, data in events:
            body = f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
            await send({"type": "http.response.body", "body": body.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _event(self, send, data: dict) -> None:
        line = b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
        await send({"type": "http.response.body", "body": line, "more_body": True})

    async def _json(self, send, status: int, data: dict, extra=()) -> None:
        body = json.dumps(data).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"x-request-id", b"req_fake"), *extra]})
        await send({"type": "http.response.body", "body": body})


def _error(message: str, type_: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def fast_app() -> FakeUpstream:
    """The app for benchmarks (`uvicorn --factory tests.support.fake_upstream:fast_app`)."""
    return FakeUpstream(record=False)


if __name__ == "__main__":  # `python -m tests.support.fake_upstream PORT` for benchmarks
    import sys

    import uvicorn

    uvicorn.run(FakeUpstream(record=False), host="127.0.0.1",
                port=int(sys.argv[1]) if len(sys.argv) > 1 else 9100,
                log_level="warning", access_log=False)
