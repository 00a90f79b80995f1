"""Fuzzing the service's OpenAPI document with schemathesis, over real HTTP: no answer is a 5xx, every
status is documented, every body matches its schema. Bounded: a few examples per operation."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (test extra)")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance, response_schema_conformance, status_code_conformance)

from .live_server import live_server  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, built_index):
    import shutil

    index = tmp_path_factory.mktemp("fuzz") / "index"
    shutil.copytree(built_index, index)
    with live_server({"shapes": index}, max_upload_bytes=256 * 1024) as url:
        yield schemathesis.openapi.from_url(url + "/openapi.json")


def test_api_never_fails_on_any_input(api_schema):
    from hypothesis import given

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    seen: dict[str, set[int]] = {}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def fuzz(case):
            response = case.call(timeout=60)
            seen.setdefault(operation.label, set()).add(response.status_code)
            case.validate_response(response, checks=checks)

        fuzz()
    # Every operation was called, and the malformed inputs were refused with 4xx somewhere.
    assert set(seen) == {op.label for op in operations}
    assert any(code in (400, 422) for codes in seen.values() for code in codes)
