"""Fuzzing: Schemathesis against the app's own OpenAPI schema (every operation, hundreds of generated requests each),
and Hypothesis against the space loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
import yaml
from hypothesis import given
from hypothesis import strategies as st

from brainsearch.errors import SpaceError
from brainsearch.settings import Settings
from brainsearch.space import bundled_spaces_dir
from brainsearch.space.loader import parse_space
from brainsearch.storage import make_engine, migrate
from service.app import create_app

pytestmark = pytest.mark.slow  # thousands of generated requests and documents

EXAMPLES = 200


@pytest.fixture
def api_schema(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    settings = Settings(database_url=url, data_dir=tmp_path / "data", allowed_hosts=["testserver"])
    app = create_app(settings, embedded_worker=False)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(max_examples=EXAMPLES, deadline=None)
def test_every_operation_answers_within_its_schema_and_never_5xx(case: Any) -> None:
    """Pass: for every operation, no generated request (valid or not) gets a 5xx, and every response conforms to the
    documented status codes, content types, headers and response schemas.

    Schemathesis' positive-data check is left out: it expects every schema-valid body to be accepted, but the API's
    validation is semantic beyond JSON Schema (a space name must be a bundled one, a space document must describe
    buildable models) and answers those with a documented 422.
    """
    case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])


# --- the DSL loader ------------------------------------------------------------------------------------------------
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_keys = st.sampled_from(
    [
        "version",
        "name",
        "block",
        "slots",
        "layer_types",
        "d_model",
        "attention",
        "ffn",
        "moe",
        "heads",
        "hidden",
        "experts",
        "gating",
        "capacity_factor",
        "activation",
        "proxy",
        "budget",
        "tokens",
        "search",
        "trials",
        "choices",
        "low",
        "high",
        "step",
        "log",
        "per_slot",
        "constraints",
        "min_layers",
        "scale_up",
        "ladder",
        "x",
    ]
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=6)),
    max_leaves=30,
)


def _mutated_tiny() -> st.SearchStrategy[dict[str, Any]]:
    base = yaml.safe_load((bundled_spaces_dir() / "tiny.yaml").read_text())
    sections = sorted(base)

    def mutate(section: str, key: str, value: Any) -> dict[str, Any]:
        doc = yaml.safe_load((bundled_spaces_dir() / "tiny.yaml").read_text())
        if isinstance(doc.get(section), dict):
            doc[section][key] = value
        else:
            doc[section] = value
        return doc

    return st.builds(mutate, st.sampled_from(sections), _keys, _documents)


@given(doc=st.one_of(_documents, _mutated_tiny()))
@hypothesis.settings(max_examples=300, deadline=None)
def test_any_document_loads_or_fails_with_path_named_problems(doc: Any) -> None:
    """Pass: any YAML document either loads as a space or raises SpaceError whose every problem names a field path
    (or the whole document) and a message; nothing else escapes."""
    text = yaml.safe_dump(doc)
    try:
        parse_space(text, "fuzz.yaml")
    except SpaceError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.message and problem.source == "fuzz.yaml"
            assert isinstance(problem.path, str)
            assert str(problem).startswith("fuzz.yaml")
