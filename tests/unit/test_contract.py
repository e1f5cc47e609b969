"""Restructuring the code must not move what people and programs rely on:
every URL path and the API's OpenAPI schema are compared with the record in
tests/fixtures/contract/ (scripts/snapshot_contract.py writes it when a change
is meant)."""

import json
from pathlib import Path

from tests.support.contract import openapi_schema, url_paths, without_database_ranges

RECORD = Path(__file__).resolve().parent.parent / "fixtures" / "contract"


def test_every_url_path_is_where_it_was():
    recorded = (RECORD / "url_paths.txt").read_text().splitlines()
    assert url_paths() == recorded


def test_the_openapi_schema_is_unchanged():
    recorded = json.loads((RECORD / "openapi.json").read_text())
    now = json.loads(json.dumps(openapi_schema(), sort_keys=True))
    assert without_database_ranges(now) == without_database_ranges(recorded)
