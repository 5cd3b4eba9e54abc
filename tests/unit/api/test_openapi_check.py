"""tests/support/openapi_check.py finds what does not fit the document (and only that)."""

from __future__ import annotations

import json

from tests.support.openapi_check import check_response, find_operation, is_stream

JSON = "application/json"


def body(value: object) -> bytes:
    return json.dumps(value).encode() + b"\n"


def test_paths_match_the_most_literal_template_with_or_without_prefix() -> None:
    assert find_operation("GET", "/v1.45/images/json?all=1") is not None
    found = find_operation("GET", "/images/json")
    assert found is not None and found[0] == "/v{version}/images/json"
    found = find_operation("GET", "/v1.30/images/localhost:5000/a/b:tag/json")
    assert found is not None and found[0] == "/v{version}/images/{name}/json"
    found = find_operation("DELETE", "/containers/parent/alias")
    assert found is not None and found[0] == "/v{version}/containers/{parent}/{alias}"
    assert find_operation("GET", "/nope") is None


def test_a_fitting_answer_has_no_problems() -> None:
    volume = {
        "Name": "v", "Driver": "local", "Mountpoint": "/m", "CreatedAt": "x",
        "Labels": None, "Scope": "local", "Options": None,
    }  # fmt: skip
    assert check_response("GET", "/volumes/v", 200, JSON, body(volume)) == []
    assert check_response("GET", "/volumes/v", 404, JSON, body({"message": "no"})) == []
    assert check_response("DELETE", "/volumes/v", 204, "", b"") == []
    assert check_response("GET", "/vx/_ping", 404, JSON, body({"message": "page not found"})) == []


def test_wrong_types_missing_keys_and_statuses_are_problems() -> None:
    problems = check_response("GET", "/volumes/v", 200, JSON, body({"Name": 3}))
    assert any('"Driver" is a required property' in p for p in problems)
    assert any("3 is not of type" in p for p in problems)
    assert check_response("GET", "/volumes/v", 404, JSON, body({"msg": "no"}))
    assert check_response("GET", "/volumes/v", 200, "text/plain", b"x")
    assert check_response("GET", "/volumes/v", 201, JSON, body({}))  # not documented
    assert check_response("GET", "/nope", 200, JSON, body({}))


def test_ndjson_streams_are_checked_line_by_line() -> None:
    good = {"Type": "container", "Action": "start", "Actor": {"ID": "x", "Attributes": {}},
            "scope": "local", "time": 1, "timeNano": 1}  # fmt: skip
    lines = body(good) + body({**good, "time": "late"})
    problems = check_response("GET", "/events", 200, JSON, lines)
    assert len(problems) == 1 and '"late" is not of type "integer"' in problems[0]
    assert is_stream("GET", "/events", 200)
    assert is_stream("GET", "/containers/x/export", 200)
    assert not is_stream("GET", "/containers/x/json", 200)


def test_an_empty_stream_without_a_content_type_fits() -> None:
    """exec start with Detach answers an empty 200 (found by the fuzz run); an empty JSON
    answer still does not fit."""
    assert check_response("POST", "/exec/x/start", 200, "", b"") == []
    assert check_response("GET", "/volumes/v", 200, "", b"")
