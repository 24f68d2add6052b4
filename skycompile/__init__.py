"""skycompile: compile SkyPilot-style task files into idempotent bash bootstrap scripts."""
from __future__ import annotations

__version__ = "0.1.0"
