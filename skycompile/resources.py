"""Files shipped with the package: `templates/` and `schema/`.

In a wheel they sit inside the package (pyproject maps the top-level folders to
`skycompile/templates` and `skycompile/schema`); in a source checkout, installed
editable or not at all, they are the folders beside the package.
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def directory(kind: str) -> Path:
    """The folder holding the `kind` ("templates" or "schema") files."""
    inside = _PACKAGE / kind
    return inside if inside.is_dir() else _CHECKOUT / kind


def read_text(kind: str, name: str) -> str:
    return (directory(kind) / name).read_text(encoding="utf-8")
