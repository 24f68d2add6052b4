"""The compile-time git ref check agrees with git itself (`git check-ref-format --branch`),
so a ref git would refuse fails at compile time, not on the node after it booted."""
from __future__ import annotations

import subprocess

from hypothesis import given, settings, strategies as st

from skycompile.normalize import git_ref_problem

PIECES = st.sampled_from(["a", "v1", "main", "/", ".", "..", "-", "@", "{", "}", "~", "^", ":",
                          "?", "*", "[", "\\", " ", "\t", "\n", "\x7f", ".lock", "é", "$(x)",
                          "HEAD", "_", "+", "#", "0123abc"])
REFS = st.lists(PIECES, min_size=1, max_size=8).map("".join)


def git_accepts(ref: str) -> bool:
    return subprocess.run(["git", "check-ref-format", "--branch", ref],
                          capture_output=True).returncode == 0


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(REFS)
def test_agrees_with_git_check_ref_format(ref):
    # `--branch` gives @ and @{-N} meanings of their own (the current or an earlier
    # branch, in a repository); a task names the remote's branch, so both are refused.
    if ref == "@" or "@{" in ref:
        assert git_ref_problem(ref)
        return
    assert (git_ref_problem(ref) is None) == git_accepts(ref), (ref, git_ref_problem(ref))


def test_examples():
    for ok in ("main", "v1.0", "feature/x-1", "café", "0123abcd", "a@b", "release/2026.11"):
        assert git_ref_problem(ok) is None, ok
    for bad in ("-x", "HEAD", "a..b", "a b", "x.lock", ".hidden", "a/", "a//b", "a.", "a:b"):
        assert git_ref_problem(bad), bad
