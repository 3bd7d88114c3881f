"""Reading usage out of a server-sent-event stream while passing it through.

Works event by event: an event goes to the client as soon as its blank line
arrives. Only events that can carry the model or usage are parsed as JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

EVENT_END = re.compile(rb"\r?\n\r?\n")


def _data_json(event: bytes) -> Any:
    for line in event.splitlines():
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if data and data != b"[DONE]":
                try:
                    return json.loads(data)
                except ValueError:
                    return None
    return None


def _holder(data: dict[str, Any]) -> dict[str, Any]:
    """Where model and usage sit: the chunk itself, or a Responses event's `response`."""
    response = data.get("response")
    return response if isinstance(response, dict) else data


class StreamUsage:
    """Feeds on upstream bytes, returns what the client should get.

    strip_usage: keymeter added stream_options.include_usage itself, so the usage
    chunk and the `"usage":null` fields it causes are removed again: the client sees
    the stream OpenAI would have sent it.
    """

    def __init__(self, strip_usage: bool) -> None:
        self.strip_usage = strip_usage
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        out = []
        while True:
            match = EVENT_END.search(self._buffer)
            if match is None:
                break
            event = self._buffer[: match.end()]
            self._buffer = self._buffer[match.end():]
            kept = self._event(event)
            if kept:
                out.append(kept)
        return b"".join(out)

    def finish(self) -> bytes:
        """Whatever is left when the upstream stream ends (an unterminated event)."""
        rest, self._buffer = self._buffer, b""
        return (self._event(rest) or b"") if rest else b""

    def _event(self, event: bytes) -> bytes | None:
        if b'"usage":{' in event or b'"usage": {' in event:
            data = _data_json(event)
            if isinstance(data, dict):
                holder = _holder(data)
                usage = holder.get("usage")
                if isinstance(usage, dict):
                    self.usage = usage
                    self.model = holder.get("model") or self.model
                    # The chat usage chunk has no choices; drop it only if we asked for it.
                    if self.strip_usage and data.get("choices") == []:
                        return None
        elif self.model is None and b'"model"' in event:
            data = _data_json(event)
            if isinstance(data, dict):
                model = _holder(data).get("model")
                self.model = model if isinstance(model, str) else None
        if self.strip_usage and b'"usage":null' in event:
            event = event.replace(b',"usage":null', b"").replace(b'"usage":null,', b"")
        return event
