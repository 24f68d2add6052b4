"""Compatibility: every SkyPilot task file in ../shared/corpus/skypilot compiles with
--dry-run, or is rejected with a message naming what skycompile does not support.

The local side is prepared the way SkyPilot's smoke tests prepare it (NOTICE.md): a HOME
with `tmpfile`, `tmp-workdir/` (with a symlink loop) and `empty-workdir/`; every other
local path a task names is created empty on demand (the tasks point into SkyPilot's own
repository). `.j2` files, and files holding Jinja markup, are rendered with sample values.
Envs declared without a value get a sample value through --env, as `sky launch --env`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import jinja2
import pytest
import yaml

from conftest import SHARED

CORPUS = SHARED / "corpus" / "skypilot"
FILES = sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file()) \
    if CORPUS.is_dir() else []

# file -> the reason it is rejected (a regex over skycompile's message). Everything not
# listed here must compile.
REJECTED = {
    # SkyPilot stores skycompile has no backend for
    "examples/training_network_storage_benchmarks/e2e_disk.yaml": r"nebius:// is not a supported store",
    "llm/verl/search-tooling/verl-search-interaction-rl-trainer.yaml": r"nebius:// is not a supported store",
    "llm/verl/verl-grpo.yaml": r"store 'nebius' is not supported",
    "llm/verl/verl-ppo.yaml": r"store 'nebius' is not supported",
    "tests/test_yamls/test_nebius_storage_mounting.yaml": r"store 'nebius' is not supported",
    "tests/test_yamls/test_coreweave_storage_mounting.yaml.j2": r"store 'coreweave' is not supported",
    # SkyPilot-provisioned volumes
    "llm/train-eval-jobgroup/train-eval-jobgroup.yaml": r"`volumes:` is not supported",
    # a mode SkyPilot's own test exercises but its docs do not define
    "tests/test_yamls/test_rclone_mount.yaml": r"mode 'RCLONE' is not supported",
    # files that leave `name:` for the user to fill in
    "examples/docker/echo_app.yaml": r"`name:` is empty",
    "examples/spot/bert_qa.yaml": r"`name:` is empty",
    "examples/spot/lightning_cifar10.yaml": r"`name:` is empty",
    "examples/spot/resnet.yaml": r"`name:` is empty",
    # placeholders left for the user: a source URI, a bucket name
    "llm/vicuna-llama-2/serve.yaml": r"a storage with a local source needs a `name:`",
    "llm/vicuna/train.yaml": r"bucket name 'YOUR_OWN_BUCKET_NAME' may contain only",
    # a secret used as a bucket name would be embedded in the script
    "examples/using_file_mounts_with_env_vars.yaml": r"\$SECRETE_BUCKET_NAME is a secret",
    # name-only COPY: the bucket must already exist, which `source: s3://NAME` says
    "llm/gpt-2/gpt2-pipeline.yaml": r"COPY storage with only a `name:` has nothing to copy",
    "llm/gpt-2/gpt2-train.yaml": r"COPY storage with only a `name:` has nothing to copy",
}

SAMPLE = {"storage_name": "sky-corpus-storage", "empty_storage_name": "sky-corpus-empty",
          "bucket_name": "sky-corpus-bucket", "store": "s3", "rclone_profile_name": "sky-corpus"}


def prepare_home(home: Path) -> None:
    (home / "tmp-workdir").mkdir(parents=True)
    (home / "tmpfile").write_text("tmp\n")
    for name in ("tmp file", "tmp file2", "foo"):
        (home / "tmp-workdir" / name).write_text(name + "\n")
    (home / "empty-workdir").mkdir()
    os.symlink(home / "tmp-workdir", home / "tmp-workdir" / "circle-link")


def task_text(path: Path) -> str:
    text = path.read_text()
    if path.suffix == ".j2" or "{{" in text or "{%" in text:
        text = jinja2.Environment().from_string(text).render(**SAMPLE)
    return text


def null_envs(text: str) -> list[str]:
    names = []
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict):
            names += [k for k, v in (doc.get("envs") or {}).items() if v is None]
    return names


MISSING = re.compile(r"local source .* does not exist \(looked for ([^)]*)\)")


def compile_corpus_file(rel: str, tmp_path: Path, cli, monkeypatch):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    prepare_home(home)
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    text = task_text(CORPUS / rel)
    (cwd / "task.yaml").write_text(text)
    argv = ["task.yaml", "--dry-run", "-o", "out/"]
    for name in null_envs(text):
        argv += ["--env", f"{name}=sky-corpus-{name.lower().replace('_', '-')}"]
    if "r2://" in text or re.search(r"store: *r2", text):
        argv += ["--endpoint-url", "https://0123456789abcdef.r2.cloudflarestorage.com"]
    created = []
    for _ in range(30):
        result = cli(*argv)
        missing = [Path(m) for m in MISSING.findall(result.err)]
        if result.code == 0 or not missing:
            return result, created
        for p in missing:
            if not (str(p).startswith(str(tmp_path)) or str(p).startswith("/tmp/")):
                return result, created
            if p.suffix:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text("placeholder\n")
            else:
                p.mkdir(parents=True, exist_ok=True)
            created.append(p)
    return result, created


@pytest.fixture
def cleanup_tmp_sources():
    """Some tasks name absolute sources under /tmp (e.g. /tmp/llama/7B); remove what we made."""
    made: list[Path] = []
    yield made
    import shutil
    for p in made:
        top = Path("/tmp") / p.relative_to("/tmp").parts[0]
        shutil.rmtree(top, ignore_errors=True) if top.is_dir() else top.unlink(missing_ok=True)


@pytest.mark.skipif(not FILES, reason="../shared/corpus/skypilot is absent")
@pytest.mark.parametrize("rel", FILES)
def test_corpus_file(rel, tmp_path, cli, monkeypatch, cleanup_tmp_sources):
    result, created = compile_corpus_file(rel, tmp_path, cli, monkeypatch)
    cleanup_tmp_sources.extend(p for p in created if str(p).startswith("/tmp/")
                               and not str(p).startswith(str(tmp_path)))
    assert "Traceback" not in result.err
    if rel in REJECTED:
        assert result.code == 2, f"{rel} compiled, but is listed as rejected"
        assert re.search(REJECTED[rel], result.err), result.err
        assert not (tmp_path / "cwd" / "out").exists()
    else:
        assert result.code == 0, result.err
        scripts = sorted((tmp_path / "cwd" / "out").rglob("node-*.sh"))
        assert scripts, "no script written"


@pytest.mark.skipif(not FILES, reason="../shared/corpus/skypilot is absent")
def test_corpus_is_complete():
    assert len(FILES) == 130
    assert set(REJECTED) <= set(FILES)
