"""skycompile: compile SkyPilot-style task files into idempotent bash bootstrap scripts.

The Python API (`skycompile.api`, documented in README.md "Python API"): compile_task,
load_task, validate, plan_json, make_options, dump_task. They are loaded on first use, so
that `import skycompile` stays cheap.
"""
from __future__ import annotations

__version__ = "0.1.0"

_API = ("Compiled", "CompiledTask", "Options", "Problem", "TaskInput", "compile_task",
        "dump_task", "load_task", "make_options", "plan_json", "validate")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'skycompile' has no attribute {name!r}")
