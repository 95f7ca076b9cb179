"""The CLI answers `--help`, `runs`, `show` and argument errors without loading torch (issue: every
command took 12-13 s, `--help` included, because importing torch and transformers costs ~8 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
from paprec_core.cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


def _probe(argv, store):
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True,
                         cwd=REPO, env={"PAPREC_STORE": str(store), "PATH": "/usr/bin:/bin",
                                        "PYTHONPATH": str(REPO)}, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def store_with_a_run(tmp_path_factory, make_config):
    from paprec_core.runner import execute_run
    from paprec_core.store import RunStore

    path = tmp_path_factory.mktemp("light") / "runs.sqlite"
    store = RunStore(path)
    rid = store.create_run(make_config(max_rounds=1))
    assert execute_run(store, rid) == "finished"
    return path


@pytest.mark.parametrize("argv", [["--help"], ["runs"], ["show", "1"], ["search", "--seed", "-1"],
                                  ["search", "--layout"], ["compare", "--help"], ["study", "--help"]])
def test_light_commands_do_not_import_torch(argv, store_with_a_run):
    got = _probe(argv, store_with_a_run)
    assert got["heavy"] == [], (argv, got)
    assert got["code"] in (0, 2), got  # 2: the one-line error of a bad argument


def test_stats_takes_data_like_every_other_verb(capsys):
    from paprec_core.cli import main

    demo = str(REPO / "assets" / "demo")
    assert main(["stats", demo]) == 0
    positional = capsys.readouterr().out
    assert main(["stats", "--data", demo]) == 0
    assert capsys.readouterr().out == positional and "demo" in positional.splitlines()[1]
    assert main(["stats", demo, "--data", demo]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # the header and one row per folder
