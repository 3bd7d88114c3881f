from __future__ import annotations

from decimal import Decimal

from usage.records import CallRecord, tokens_from_usage


def test_it_reads_chat_completions_usage():
    usage = {
        "prompt_tokens": 100, "completion_tokens": 300, "total_tokens": 400,
        "prompt_tokens_details": {"cached_tokens": 40, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 120, "audio_tokens": 0},
    }
    assert tokens_from_usage(usage) == {
        "input_tokens": 100, "cached_input_tokens": 40, "output_tokens": 300,
        "reasoning_tokens": 120, "audio_seconds": Decimal(0),
    }


def test_it_reads_responses_usage():
    usage = {
        "input_tokens": 50, "input_tokens_details": {"cached_tokens": 10},
        "output_tokens": 70, "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 120,
    }
    counts = tokens_from_usage(usage)
    assert (counts["input_tokens"], counts["cached_input_tokens"]) == (50, 10)
    assert (counts["output_tokens"], counts["reasoning_tokens"]) == (70, 30)


def test_it_reads_embeddings_usage():
    counts = tokens_from_usage({"prompt_tokens": 8, "total_tokens": 8})
    assert counts["input_tokens"] == 8 and counts["output_tokens"] == 0


def test_it_tolerates_junk_without_inventing_tokens():
    for junk in (None, [], "x", {"prompt_tokens": None, "completion_tokens": "12"},
                 {"prompt_tokens": -5, "prompt_tokens_details": None}):
        counts = tokens_from_usage(junk)
        assert counts["input_tokens"] == 0 and counts["output_tokens"] == 0


def test_cached_never_exceeds_input():
    counts = tokens_from_usage({"prompt_tokens": 10,
                                "prompt_tokens_details": {"cached_tokens": 99}})
    assert counts["cached_input_tokens"] == 10


def test_a_record_survives_json():
    record = CallRecord(request_id="req_1", created_at=1764150000.5, project_id=1,
                        environment_id=2, provider_key_id=3, gateway_token_id=None,
                        endpoint="/v1/chat/completions", model="gpt-4o-mini")
    record.add_usage({"prompt_tokens": 100, "completion_tokens": 300})
    assert CallRecord.from_json(record.to_json()) == record
