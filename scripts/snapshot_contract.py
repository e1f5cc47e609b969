"""Writes the portal's URL paths (with their names) and the API's OpenAPI
schema to tests/fixtures/contract/, the record that
tests/unit/test_contract.py compares the running code with. Run it only when
a change of paths or schema is meant:

    .venv/bin/python scripts/snapshot_contract.py
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")

import django  # noqa: E402

django.setup()

from tests.support.contract import openapi_schema, url_paths  # noqa: E402

target = ROOT / "tests" / "fixtures" / "contract"
target.mkdir(parents=True, exist_ok=True)
(target / "url_paths.txt").write_text("\n".join(url_paths()) + "\n")
(target / "openapi.json").write_text(json.dumps(openapi_schema(), indent=1, sort_keys=True) + "\n")
print(f"wrote {target}/url_paths.txt and openapi.json")
