"""Small entry points the benchmarks time or check, each run as its own process:

    python -m bench.probe scan ROOT            what skycompile uploads from ROOT, NUL-separated
    python -m bench.probe imports ARGS...      run the skycompile CLI with ARGS in-process, then
                                               print the cloud SDK modules it imported
"""
from __future__ import annotations

import contextlib
import io
import os
import sys

SDKS = ("boto3", "botocore", "google", "azure", "s3transfer")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "scan":
        from skycompile import ignore
        found = ignore.scan(argv[1])
        sys.stdout.buffer.write(b"".join(os.fsencode(f) + b"\0" for f in found.files))
        return 0
    if argv and argv[0] == "imports":
        from skycompile import cli
        with contextlib.redirect_stdout(io.StringIO()):  # the plan
            code = cli.main(argv[1:])
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in SDKS)
        print("\n".join(loaded))
        return code
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
