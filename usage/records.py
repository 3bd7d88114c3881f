"""The compact call record that travels gateway → Redis stream → flush, and the
parsing of the provider's usage objects into its token counts.

A record holds ids, counts and timings only: no prompt, no completion, no key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any


@dataclass(slots=True)
class CallRecord:
    request_id: str
    created_at: float  # unix seconds, UTC
    project_id: int
    environment_id: int
    provider_key_id: int | None
    gateway_token_id: int | None
    endpoint: str
    source: str = "gateway"
    model: str = ""
    status_code: int = 200
    stream: bool = False
    batch: bool = False
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    audio_seconds: str = "0"  # a Decimal as a string: JSON has no decimals
    latency_ms: int = 0
    ttfb_ms: int | None = None
    error_type: str = ""

    def to_json(self) -> bytes:
        # Not dataclasses.asdict: it deep-copies, and this runs once per gateway call.
        return _ENCODER.encode({name: getattr(self, name) for name in _FIELD_NAMES}).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> CallRecord:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def add_usage(self, usage: dict[str, Any] | None) -> None:
        """Fill the token counts from a usage object of any OpenAI endpoint."""
        counts = tokens_from_usage(usage)
        self.input_tokens = counts["input_tokens"]
        self.cached_input_tokens = counts["cached_input_tokens"]
        self.output_tokens = counts["output_tokens"]
        self.reasoning_tokens = counts["reasoning_tokens"]
        if counts["audio_seconds"]:
            self.audio_seconds = str(counts["audio_seconds"])


_FIELD_NAMES = tuple(f.name for f in fields(CallRecord))
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _int(value: Any) -> int:
    # Usage objects come from the network: tolerate null, floats and junk.
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and value == value:
        return max(int(value), 0)
    return 0


def tokens_from_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Token counts from a Chat Completions, Completions, Embeddings or Responses usage.

    prompt_tokens / input_tokens include the cached ones; completion_tokens /
    output_tokens include the reasoning ones.
    """
    counts: dict[str, Any] = {
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "output_tokens": 0,
        "reasoning_tokens": 0,
        "audio_seconds": Decimal(0),
    }
    if not isinstance(usage, dict):
        return counts
    if "input_tokens" in usage or "output_tokens" in usage:  # Responses API
        in_details = usage.get("input_tokens_details") or {}
        out_details = usage.get("output_tokens_details") or {}
        counts["input_tokens"] = _int(usage.get("input_tokens"))
        counts["output_tokens"] = _int(usage.get("output_tokens"))
    else:  # Chat Completions, Completions, Embeddings
        in_details = usage.get("prompt_tokens_details") or {}
        out_details = usage.get("completion_tokens_details") or {}
        counts["input_tokens"] = _int(usage.get("prompt_tokens"))
        counts["output_tokens"] = _int(usage.get("completion_tokens"))
    if isinstance(in_details, dict):
        counts["cached_input_tokens"] = min(_int(in_details.get("cached_tokens")),
                                            counts["input_tokens"])
    if isinstance(out_details, dict):
        counts["reasoning_tokens"] = min(_int(out_details.get("reasoning_tokens")),
                                         counts["output_tokens"])
    seconds = usage.get("seconds")  # audio transcription usage ({"type": "duration"})
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        counts["audio_seconds"] = Decimal(str(seconds))
    return counts
