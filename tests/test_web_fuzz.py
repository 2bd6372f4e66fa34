"""The JSON API fuzzed from its own OpenAPI description (schemathesis): no server error.

Every operation gets generated requests, logged in and with the CSRF token, so they reach
the handlers, not just the login check. Name resolution is cut off: nothing reaches the
network, and a generated URL gets the fetcher's one-line refusal.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from tests.conftest import PHOTOS, need_shared
from tests.test_web import login
from tests.web_library import WebLibrary, app_of, build


@pytest.fixture
def library(tmp_path: Path, installed_model: Path) -> Iterator[WebLibrary]:
    yield from build(tmp_path, need_shared(PHOTOS))


def test_no_generated_request_gets_a_server_error(
    library: WebLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror("name resolution is off in tests")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    app = app_of(library)
    client = TestClient(app, base_url="http://127.0.0.1")
    csrf = login(client)
    headers = {
        "Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items()),
        "X-CSRF-Token": csrf,
    }
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app, headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/photos", "/api/photo", "/api/keywords"}
    statuses: set[int] = set()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=int(os.environ.get("PHOTOTAG_FUZZ_EXAMPLES", "25")),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            statuses.add(response.status_code)
            assert response.status_code < 500, (case.path, response.text[:300])

        call()
    assert 200 in statuses and statuses & {400, 404, 422}  # handlers reached, inputs refused
