"""The hash cache (state.State.cached_hashes_many, through manifest.Hasher): files hashed
once are answered from the cache while path, size, mtime and inode are unchanged, for
many files at once (one range query) as for few, and neighbours whose names share the
prefix never answer for each other."""
from __future__ import annotations

import os

from skycompile.manifest import Hasher, fingerprint
from skycompile.state import State


def hashed(state: State, paths: list[str]) -> tuple[list, int]:
    hasher = Hasher(state)
    found = hasher.hash_files(paths)
    hasher.save()
    return found, hasher.read


def test_many_files_from_one_range_query(tmp_path):
    state = State(tmp_path / "state.db")
    # "dir-x" sorts before "dir/", "dir0" right after the range "dir/" ... "dir0"
    groups = {name: tmp_path / name for name in ("dir", "dir-x", "dir0")}
    paths = {}
    for name, d in groups.items():
        (d / "sub").mkdir(parents=True)
        paths[name] = []
        for i in range(80):
            p = d / ("sub" if i % 2 else "") / f"f{i}.txt"
            p.write_text(f"{name} {i}\n")
            paths[name].append(os.path.realpath(p))
    for name in groups:  # cold: every file read, and the answers are the real hashes
        found, read = hashed(state, paths[name])
        assert read == 80
        assert [(tags, sha) for _, tags, sha in found] == \
            [fingerprint(p, os.path.getsize(p)) for p in paths[name]]
    for name in groups:  # warm: nothing read, the same answers
        again, read = hashed(state, paths[name])
        assert read == 0
        assert [(tags, sha) for _, tags, sha in again] == \
            [fingerprint(p, os.path.getsize(p)) for p in paths[name]]
    changed = paths["dir"][7]
    with open(changed, "a") as fh:
        fh.write("more\n")
    found, read = hashed(state, paths["dir"] + paths["dir0"])  # 160 files under tmp_path
    assert read == 1
    assert found[7][1:] == fingerprint(changed, os.path.getsize(changed))
    state.close()
