from __future__ import annotations

import json

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_llm.pricing import Price, PriceFileError, PriceTable, load_price_file


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from([("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("openai", "gpt-4.1-mini-2025-04-14"),
                           ("anthropic", "claude-3-5-haiku-latest")]),
    input_tokens=st.integers(0, 150_000),
    output_tokens=st.integers(0, 50_000),
    cached_share=st.floats(0, 1),
)
def test_cached_fast_path_matches_the_price_library(model, input_tokens, output_tokens, cached_share):
    provider, name = model
    cached = int(input_tokens * cached_share)
    ours = PriceTable().cost(provider, name, input_tokens, output_tokens, cache_read=cached)
    theirs = calc_price(
        Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached),
        model_ref=name,
        provider_id=provider,
    ).total_price
    assert ours == pytest.approx(float(theirs), rel=1e-9, abs=1e-12)


def test_unknown_model_costs_nothing_and_raises_nothing():
    table = PriceTable()
    assert table.cost("openai", "my-private-finetune-xyz", 100, 100) is None
    assert table.cost("no-such-provider", "gpt-4o", 100, 100) is None
    assert table.cost("openai", None, 100, 100) is None
    assert table.cost("openai", "gpt-4o-mini", None, None) is None


def test_override_file_adds_and_replaces_prices(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"prices": [
        {"provider": "openai", "model": "gpt-4o-mini", "input_per_mtok": 1, "output_per_mtok": 2},
        {"model": "local-llama", "input_per_mtok": 0.1, "output_per_mtok": 0.2, "cache_read_per_mtok": 0.05},
    ]}))
    table = PriceTable(load_price_file(path))
    assert table.cost("openai", "gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert table.cost("vllm", "local-llama", 2_000_000, 0, cache_read=1_000_000) == pytest.approx(0.15)


def test_price_file_from_env(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"prices": [{"model": "x", "input_per_mtok": 1, "output_per_mtok": 1}]}))
    monkeypatch.setenv("OTEL_LLM_PRICES_FILE", str(path))
    assert PriceTable.from_env().cost("any", "x", 500_000, 500_000) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", 'must be a JSON object with a "prices" list'),
        ('{"prices": [{"input_per_mtok": 1, "output_per_mtok": 1}]}', 'prices[0]: "model" must be a non-empty string'),
        ('{"prices": [{"model": "m", "input_per_mtok": -1, "output_per_mtok": 1}]}', '"input_per_mtok" must be a number >= 0'),
        ('{"prices": [{"model": "m", "input_per_mtok": 1}]}', '"output_per_mtok" must be a number'),
        ('{"prices": [{"model": "m", "input_per_mtok": 1, "output_per_mtok": 1, "colour": 2}]}', "unknown field(s) colour"),
    ],
)
def test_bad_price_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(PriceFileError) as error:
        load_price_file(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_missing_price_file_names_the_path(tmp_path):
    with pytest.raises(PriceFileError, match="cannot read price file .*nope.json"):
        load_price_file(tmp_path / "nope.json")


def test_price_defaults_cache_rates_to_input_rate():
    assert Price(2.0, 4.0).cost(1_000_000, 0, cache_read=500_000) == pytest.approx(2.0)
