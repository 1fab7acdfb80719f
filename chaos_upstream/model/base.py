"""The base of every scenario model: frozen, strict about unknown fields, docstrings as descriptions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Frozen, rejects unknown fields, and turns attribute docstrings into JSON Schema descriptions."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        populate_by_name=True,
    )
