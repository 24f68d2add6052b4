"""Apply phase: the only code that talks to clouds (bucket creation and uploads).

Not built yet: it lands with the local-side issue. Until then every run behaves like
--dry-run, and says so, rather than pretending that buckets exist.
"""
from __future__ import annotations

import sys

from .options import Options


def apply(plans: list, opts: Options) -> None:
    """Ensure buckets and upload local sources for every plan."""
    needs = [b for p in plans for b in p.buckets if b.create] + [u for p in plans for u in p.uploads]
    if needs:
        print("skycompile: warning: bucket creation and uploads are not implemented in this "
              "version; nothing was created or uploaded (the run behaved like --dry-run)",
              file=sys.stderr)
