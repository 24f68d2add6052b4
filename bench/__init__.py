"""skycompile's benchmark harness: `python -m bench` (see bench/README.md).

It starts its own `rclone serve s3` on loopback, generates the data sets in a temporary
directory, runs every tool as its real command line against the same server in the same run,
checks what landed in the bucket, and removes everything at the end.
"""
