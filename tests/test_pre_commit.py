"""The pre-commit hooks of .pre-commit-hooks.yaml, run by pre-commit itself in a project
repository: pre-commit installs skycompile from a repository holding this working tree
(so its dependencies come from the package index, as for any user), the `skycompile`
hook rewrites stale scripts and fails the commit until they are added, and the
`skycompile-check` hook fails with a diff."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT

SHIPPED = ["pyproject.toml", "README.md", ".pre-commit-hooks.yaml", "skycompile", "templates",
           "schema"]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def hook_repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repository holding this working tree's package: (path, commit)."""
    repo = tmp_path / "skycompile-repo"
    repo.mkdir()
    for name in SHIPPED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "skycompile")
    return repo, git(repo, "rev-parse", "HEAD")


def test_hooks_keep_committed_scripts_in_sync(tmp_path):
    repo, rev = hook_repo(tmp_path)
    hooks = {h["id"] for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert hooks == {"skycompile", "skycompile-check"}
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    (project / "task.yaml").write_text("name: hooked\nfile_mounts:\n  /data: s3://inputs\n"
                                       "run: echo one\n")
    args = ["task.yaml", "-o", "deploy/", "--bucket", "team-bucket"]
    (project / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{
        "repo": str(repo), "rev": rev,
        "hooks": [{"id": "skycompile", "args": args},
                  {"id": "skycompile-check", "args": args, "stages": ["manual"]}]}]}))
    git(project, "add", "-A")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
           "SKYCOMPILE_STATE_DIR": str(tmp_path / "state")}
    pre_commit = [sys.executable, "-m", "pre_commit"]

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*pre_commit, "run", "--all-files", *extra], cwd=project,
                              capture_output=True, text=True, env=env, timeout=900)

    first = run()  # writes the scripts; new files are not a change to pre-commit
    assert first.returncode == 0, first.stdout + first.stderr
    script = project / "deploy" / "node-0.sh"
    assert "echo one" in script.read_text()
    git(project, "add", "-A")  # the user adds them once
    second = run()
    assert second.returncode == 0, second.stdout + second.stderr
    assert run("--hook-stage", "manual", "skycompile-check").returncode == 0

    (project / "task.yaml").write_text((project / "task.yaml").read_text().replace("one", "two"))
    git(project, "add", "task.yaml")
    check = run("--hook-stage", "manual", "skycompile-check")
    assert check.returncode == 1
    assert "echo two" in check.stdout and "is out of date" in check.stdout
    assert "echo one" in script.read_text()  # the check never writes
    third = run()  # rewrites the stale script: the commit fails until it is added
    assert third.returncode == 1, third.stdout + third.stderr
    assert "files were modified by this hook" in third.stdout
    assert "echo two" in script.read_text()
    git(project, "add", "-A")
    assert run().returncode == 0
