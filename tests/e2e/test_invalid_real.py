"""The bad-input corpus (tests/test_invalid.py) in real mode against a live S3 server that
the compile could reach: AWS_ENDPOINT_URL names it and the keys are valid. Every case must
still fail with its message, and afterwards the server holds no bucket and no object and
the working directories are unchanged."""
from __future__ import annotations

import test_invalid as corpus

# AWS_ENDPOINT_URL gives this case the endpoint it lacks: it is valid here.
VALID_WITH_AN_ENDPOINT = {"r2-without-endpoint"}


def test_no_bad_input_creates_a_bucket(s3, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(home / "state"))
    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.delenv("SKYCOMPILE_TEST_UNSET", raising=False)
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    wrong = []
    for c in corpus.CASES:
        if c.bug or c.bug_written or c.id in VALID_WITH_AN_ENDPOINT:
            continue
        work = tmp_path / c.id
        work.mkdir()
        monkeypatch.chdir(work)
        corpus.materialize(work, c.files)
        before = corpus.snapshot(work)
        argv = [a for a in c.argv if a != "--dry-run"]
        code, out, err = corpus.run_case(c, argv, capsys)
        expected = c.expected.replace("{tmp}", str(work)) + "\n"
        if (code, out, err) != (2, "", expected) or corpus.snapshot(work) != before:
            wrong.append((c.id, code, err))
    assert not wrong, wrong
    assert s3.client().list_buckets()["Buckets"] == []
    assert not any(s3.root.iterdir())
    assert not any(home.iterdir())  # no state, no cache
