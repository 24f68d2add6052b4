"""The Python API (skycompile.api): the same checks, plans and scripts as the command line,
for callers in-process; `skycompile plan [--json]`. The apply half of compile_task runs
against a real S3 server in tests/e2e/test_apply.py."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

import skycompile
from skycompile import cli as cli_mod
from skycompile.errors import TaskError, UsageError

from conftest import ROOT

TASK = """\
name: api
num_nodes: 2
workdir: src
file_mounts:
  /data:
    source: s3://some-public-bucket/data
    mode: MOUNT
run: echo hi
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a" * 100)
    (tmp_path / "task.yaml").write_text(TASK)
    return tmp_path


def test_import_is_cheap_and_names_load_on_use():
    code = ("import sys, skycompile; before = {'jinja2', 'jsonschema', 'yaml'} & set(sys.modules);"
            "skycompile.compile_task; print(sorted(before), 'jinja2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.split() == ["[]", "True"]
    assert set(skycompile.api.__all__) <= set(skycompile.__all__)
    with pytest.raises(AttributeError):
        skycompile.no_such_name  # noqa: B018


def test_compile_task_gives_the_bytes_the_command_line_writes(project, cli):
    assert cli("task.yaml", "--dry-run", "-o", "out/").code == 0
    args = cli_mod.parser().parse_args(["task.yaml", "--dry-run", "-o", "out/"])
    result = skycompile.compile_task("task.yaml", dry_run=True, options=cli_mod.options(args))
    assert isinstance(result, skycompile.Compiled) and result.applied is None
    [task] = result.tasks
    assert [Path(f"out/node-{i}.sh").read_text() for i in range(2)] == list(task.scripts)
    assert task.plan.task.num_nodes == 2 and task.state_id == "api"
    assert result.task_file == "task.yaml"


def test_task_data_compiles_like_its_yaml(project):
    data = {"name": "api", "num_nodes": 2, "workdir": "src",
            "file_mounts": {"/data": {"source": "s3://some-public-bucket/data", "mode": "MOUNT"}},
            "run": "echo hi"}
    opts = skycompile.make_options(recompile="skycompile task.yaml")
    from_data = skycompile.compile_task(data, dry_run=True, options=opts)
    Path("dumped.yaml").write_text(skycompile.dump_task(data))
    from_file = skycompile.compile_task("dumped.yaml", dry_run=True, options=opts)
    assert from_data.task_file == "<mapping>"
    assert from_data.task_sha256 == from_file.task_sha256
    assert [s.replace("<mapping>", "dumped.yaml") for s in from_data.tasks[0].scripts] == \
        list(from_file.tasks[0].scripts)


def test_unnamed_task_data_is_named_after_its_content(project):
    """Two unnamed tasks never share a node's state (a file's stem names one from a file);
    the header says the command line was not recorded rather than showing ''."""
    one = skycompile.compile_task({"run": "echo one"}, dry_run=True).tasks[0]
    two = skycompile.compile_task({"run": "echo two"}, dry_run=True).tasks[0]
    again = skycompile.compile_task({"run": "echo one"}, dry_run=True).tasks[0]
    assert one.state_id.startswith("task-") and two.state_id.startswith("task-")
    assert one.state_id != two.state_id and one.state_id == again.state_id
    assert f"readonly SLUG='{one.state_id}'" in one.scripts[0]
    assert "# Regenerate with: (not recorded: compiled through the Python API)\n" in \
        one.scripts[0]


def test_a_list_of_mappings_is_a_pipeline(project):
    result = skycompile.compile_task([{"name": "one", "run": "a"}, {"name": "two", "run": "b"}],
                                     dry_run=True)
    assert [t.state_id for t in result.tasks] == ["one", "two"]
    assert [t.subdir for t in result.tasks] == ["0-one", "1-two"]


def test_workdir_may_be_a_path_and_delete_needs_a_real_run(project):
    opts = skycompile.make_options(workdir=Path("src"))
    assert opts.workdir == "src"
    with pytest.raises(UsageError, match="--delete acts on buckets"):
        skycompile.compile_task("task.yaml", dry_run=True,
                                options=skycompile.make_options(delete=True))


def test_options_change_the_compile(project):
    opts = skycompile.make_options(num_nodes=3, env={"A": "1"}, node_user="alice")
    [task] = skycompile.load_task("task.yaml", options=opts)
    assert task.num_nodes == 3 and ("A", "1") in task.envs
    scripts = skycompile.compile_task("task.yaml", dry_run=True, options=opts).tasks[0].scripts
    assert len(scripts) == 3 and "readonly NODE_USER='alice'" in scripts[0]


def test_validate_returns_every_located_problem(project):
    assert skycompile.validate("task.yaml") == []
    Path("bad.yaml").write_text("num_nodes: 0\nrun: [1]\n")
    problems = skycompile.validate("bad.yaml")
    assert [(p.line, p.col, p.path) for p in problems] == [(1, 12, "num_nodes"), (2, 6, "run")]
    assert all(p.file == "bad.yaml" and p.fix for p in problems)
    assert str(problems[0]) == ("bad.yaml:1:12: num_nodes: must be at least 1, not 0. "
                                "Use a value at least 1.")
    found = skycompile.validate({"num_nodes": 0, "run": "x"})
    assert [(p.file, p.line, p.path) for p in found] == [("<mapping>", 1, "num_nodes")]


def test_errors_are_the_command_lines(project):
    Path("bad.yaml").write_text("num_nodes: 0\n")
    with pytest.raises(TaskError) as e:
        skycompile.compile_task("bad.yaml", dry_run=True)
    assert str(e.value) == ("bad.yaml:1:12: num_nodes: must be at least 1, not 0. "
                            "Use a value at least 1.")
    assert e.value.exit_code == 2
    with pytest.raises(TaskError, match="cannot read the task file"):
        skycompile.load_task("missing.yaml")
    with pytest.raises(UsageError, match="a task is a path, a mapping or a list of mappings"):
        skycompile.validate(42)
    with pytest.raises(UsageError, match="cannot be written as YAML"):
        skycompile.validate({"run": object()})


@pytest.mark.parametrize("kw,message", [
    ({"num_nodes": 0}, "--num-nodes must be at least 1, not 0"),
    ({"num_nodes": "2"}, "--num-nodes must be a whole number, not '2'"),
    ({"env": {"1BAD": "x"}}, "--env '1BAD': not a valid variable name"),
    ({"env": {"SKYCOMPILE_TEST_UNSET": None}}, "SKYCOMPILE_TEST_UNSET is not set"),
    ({"node_user": "Bad User"}, "not a valid user name"),
    ({"node_ips": ["10.0.0.1", "nope"]}, "'nope' is not an IP address"),
    ({"node_ips": "10.0.0.1"}, "pass a list of addresses"),
    ({"store": "ftp"}, "--store 'ftp': choose one of"),
    ({"endpoint_url": "s3.example.com"}, "is not an http(s) URL"),
    ({"rclone_sha256": {"amd64": "a" * 64}}, "describes a mirror's archive"),
    ({"rclone_mirror": "ftp://m"}, "give an http://, https:// or file:// base URL"),
    ({"node_user": None}, "--user: expected a string, not NoneType"),
    ({"bucket": 3}, "--bucket: expected a string, not int"),
    ({"env": [("A", "b")]}, "--env: pass a mapping"),
    ({"env": {"A": "x\x00y"}}, "--env A: a value cannot contain a NUL character"),
    ({"env": {"A": "x\udcffy"}}, "--env A: a value cannot contain a lone surrogate"),
    ({"node_ips": ["10.0.0.1", ""]}, "'' is not an IP address"),
])
def test_make_options_checks_like_the_flags(kw, message):
    with pytest.raises(UsageError, match=None) as e:
        skycompile.make_options(**kw)
    assert message in str(e.value)


def test_plan_json(project, cli):
    compiled = skycompile.compile_task("task.yaml", dry_run=True)
    found = skycompile.plan_json(compiled)
    json.dumps(found)  # plain data
    [task] = found["tasks"]
    assert found["task_file"] == "task.yaml" and found["pipeline"] is None
    assert task["name"] == "api" and task["num_nodes"] == 2
    assert [(b["uri"], b["action"], b["region"], b["endpoint"]) for b in task["buckets"]] == [
        ("s3://some-public-bucket", "use-existing", None, None),
        ("s3://skycompile-tester-api", "create-or-reuse", None, None)]
    assert [(u["uri"], u["files"], u["bytes"]) for u in task["uploads"]] == \
        [("s3://skycompile-tester-api/workdir", 1, 100)]
    assert task["mounts"] == [{"mode": "MOUNT", "uri": "s3://some-public-bucket/data",
                               "path": "/data"}]
    assert task["workdir"] == {"kind": "copy", "uri": "s3://skycompile-tester-api/workdir"}
    for node, script in zip(task["nodes"], compiled.tasks[0].scripts):
        data = script.encode()
        assert node["bytes"] == len(data)
        assert node["gzip_bytes"] == len(skycompile.userdata.gzipped(data))
        assert gzip.decompress(skycompile.userdata.gzipped(data)) == data
        aws = node["targets"]["aws"]
        assert aws == {"budget": 16384, "fits": len(data) <= 16384,
                       "fits_gzipped": node["gzip_bytes"] <= 16384}
    assert {n: t["budget"] for n, t in task["nodes"][0]["targets"].items()} == \
        {"aws": 16384, "gcp": 262144, "azure": 65535, "openstack": 49149}

    result = cli("plan", "task.yaml", "--json", "-o", "out/")
    assert result.code == 0, result.err
    printed = json.loads(result.out)
    assert [n.pop("path") for n in printed["tasks"][0]["nodes"]] == \
        ["out/node-0.sh", "out/node-1.sh"]
    assert not Path("out").exists()  # nothing written
    # the same scripts as a compile to out/: -o is part of their header
    assert cli("task.yaml", "--dry-run", "-o", "out/").code == 0
    assert [n["bytes"] for n in printed["tasks"][0]["nodes"]] == \
        [len(Path(f"out/node-{i}.sh").read_bytes()) for i in range(2)]


def test_plan_for_humans(project, cli):
    result = cli("plan", "task.yaml", "--num-nodes", "1")
    assert result.code == 0, result.err
    assert "task api: 1 node(s)" in result.out
    assert "s3://some-public-bucket/data -> /data" in result.out
    header, row = result.out.splitlines()[-2:]
    assert header.split() == ["node", "bytes", "gzip", "aws", "gcp", "azure", "openstack"]
    size = skycompile.plan_json(skycompile.compile_task(
        "task.yaml", dry_run=True, options=skycompile.make_options(
            num_nodes=1, recompile="skycompile task.yaml --num-nodes 1")))["tasks"][0]["nodes"][0]
    marks = ["fits" if t["fits"] else "gz" if t["fits_gzipped"] else "NO"
             for t in size["targets"].values()]
    assert row.split() == ["0", f"{size['bytes']:,}", f"{size['gzip_bytes']:,}", *marks]


def test_plan_reports_problems_like_a_compile(project, cli):
    Path("bad.yaml").write_text("num_nodes: 0\n")
    result = cli("plan", "bad.yaml", "--json")
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("bad.yaml:1:12: num_nodes:")
    assert cli("plan", "task.yaml", "--check").code == 2  # not a plan flag


def test_plan_help_lists_the_budgets(cli):
    result = cli("plan", "--help")
    assert result.code == 0
    assert "aws 16,384, gcp 262,144, azure 65,535, openstack 49,149" in result.out
