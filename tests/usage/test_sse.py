from __future__ import annotations

from usage.sse import StreamUsage

CHUNK = (b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini",'
         b'"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}\n\n')
USAGE = (b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18",'
         b'"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}\n\n')
DONE = b"data: [DONE]\n\n"


def test_it_strips_what_keymeter_injected():
    capture = StreamUsage(strip_usage=True)
    out = capture.feed(CHUNK + USAGE + DONE)
    assert out == CHUNK.replace(b',"usage":null', b"") + DONE
    assert capture.usage == {"prompt_tokens": 5, "completion_tokens": 7}
    assert capture.model == "gpt-4o-mini-2024-07-18"


def test_it_keeps_everything_when_the_client_asked_for_usage():
    capture = StreamUsage(strip_usage=False)
    assert capture.feed(CHUNK + USAGE + DONE) == CHUNK + USAGE + DONE
    assert capture.usage["completion_tokens"] == 7


def test_events_split_across_reads_are_joined_before_parsing():
    capture = StreamUsage(strip_usage=True)
    whole = CHUNK + USAGE + DONE
    out = b"".join(capture.feed(whole[i:i + 7]) for i in range(0, len(whole), 7))
    assert out + capture.finish() == CHUNK.replace(b',"usage":null', b"") + DONE
    assert capture.usage["prompt_tokens"] == 5


def test_it_reads_usage_from_the_responses_completed_event():
    event = (b'event: response.completed\ndata: {"type":"response.completed","response":'
             b'{"model":"gpt-4o","usage":{"input_tokens":3,"output_tokens":4}}}\n\n')
    capture = StreamUsage(strip_usage=False)
    assert capture.feed(event) == event
    assert capture.usage == {"input_tokens": 3, "output_tokens": 4}
    assert capture.model == "gpt-4o"


def test_crlf_framed_events_flow_one_by_one():
    capture = StreamUsage(strip_usage=False)
    assert capture.feed(b"data: {}\r\n\r\ndata: {") == b"data: {}\r\n\r\n"
