"""The published JSON Schema of a scenario file, for editors (yaml-language-server) and `schema`."""

from __future__ import annotations

from typing import Any

from chaos_upstream.model.scenario import Scenario

SCHEMA_ID = "https://chaos-upstream.invalid/scenario.schema.json"


def scenario_schema() -> dict[str, Any]:
    schema = Scenario.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
