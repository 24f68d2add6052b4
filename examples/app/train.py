"""A stand-in training script for the examples."""
import os
import pathlib

rank = os.environ.get("SKYPILOT_NODE_RANK", "0")
out = pathlib.Path(os.environ.get("OUTPUT_DIR", "/outputs"))
out.mkdir(parents=True, exist_ok=True)
(out / f"result-{rank}.txt").write_text(f"node {rank} done\n")
print(f"node {rank}: wrote {out}/result-{rank}.txt")
