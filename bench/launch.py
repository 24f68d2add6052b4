"""python -S bench/launch.py RESULT -- ARGV...: run ARGV (its environment, directory and
standard streams are this process's) and write its wall-clock seconds, the time it ended,
CPU seconds and peak RSS as JSON to RESULT; exit with its exit code.

Why a launcher: Linux's peak RSS of a process includes what it had before exec, so a child
forked straight from the benchmark (a large Python process) would report the benchmark's
size. This launcher is small (`-S`: no site packages), starts the tool with posix_spawn and
times it from the inside, so neither its own start-up nor its size counts."""
import json
import os
import sys
import time


def main() -> int:
    result, sep, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    if sep != "--" or not argv:
        print(__doc__, file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ)
    except OSError as e:
        print(f"launch: {argv[0]}: {e}", file=sys.stderr)
        return 127
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    end = time.time()  # the epoch second it ended, to set against a server's file times
    code = os.waitstatus_to_exitcode(status)
    with open(result, "w") as fh:
        json.dump({"wall": wall, "end": end, "cpu": usage.ru_utime + usage.ru_stime,
                   "rss_kib": usage.ru_maxrss, "code": code}, fh)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
