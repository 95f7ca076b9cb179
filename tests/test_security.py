"""No code from data files, and no open port (issue 14, security).

Each planted payload writes a marker file when it runs; the tests assert the
marker is absent without the explicit opt-in (and, for the pickle, present with
it, so the payload is known to be live).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from paprec_core.data import load_dataset
from paprec_core.errors import CheckpointError, DataError

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Pickles to a call that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _planted_store(tmp_path: Path, demo_store: Path) -> tuple[Path, Path]:
    import pickle

    folder = tmp_path / "store"
    shutil.copytree(demo_store, folder)
    marker = tmp_path / "PWNED"
    (folder / "exp_splits.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    return folder, marker


def test_a_planted_exp_splits_runs_nothing_without_the_opt_in(tmp_path, demo_store):
    folder, marker = _planted_store(tmp_path, demo_store)
    with pytest.raises(DataError) as e:
        load_dataset(folder, read_reviews=True)
    msg = str(e.value)
    assert "exp_splits.pkl" in msg and "runs code" in msg and "--trust-pickle" in msg and "\n" not in msg
    assert load_dataset(folder).sequences  # sequential and matching never read it
    assert not marker.exists()
    with pytest.raises(DataError):  # with the opt-in the file is read: the payload is live
        load_dataset(folder, read_reviews=True, trust_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("argv", [
    ["evaluate", "--task", "explanation", "--no-baselines"],
    ["pretrain", "--out", "{tmp}/bb", "--epochs", "1"],  # its default tasks include explanation
    ["search", "--task", "explanation", "--max-rounds", "1"],
    ["study", "--backbone", "{bb}", "--out", "{tmp}/rep", "--tasks", "explanation", "--store", "{tmp}/s.sqlite"],
])
def test_every_cli_verb_refuses_a_planted_pickle_without_the_opt_in(tmp_path, demo_store, demo_backbone_dir,
                                                                    capsys, argv):
    from paprec_core import cli

    folder, marker = _planted_store(tmp_path, demo_store)
    argv = [a.format(tmp=tmp_path, bb=demo_backbone_dir) for a in argv] + ["--data", str(folder)]
    if argv[0] in ("evaluate", "search"):
        argv += ["--backbone", str(demo_backbone_dir)]
    if argv[0] == "search":
        argv += ["--store", str(tmp_path / "runs.sqlite")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--trust-pickle" in err and len(err.splitlines()) == 1, err
    assert not marker.exists()
    if argv[0] == "search":  # refused before a run is recorded
        from paprec_core.store import RunStore

        assert RunStore(tmp_path / "runs.sqlite").list_runs() == []


def test_the_dashboard_runner_refuses_an_explanation_run_before_recording_it(tmp_path, demo_store, make_config):
    from paprec_core.runner import Runner
    from paprec_core.store import RunStore

    folder, marker = _planted_store(tmp_path, demo_store)
    store = RunStore(tmp_path / "runs.sqlite")
    with pytest.raises(DataError, match="Read exp_splits.pkl"):
        Runner(store).submit(make_config(data=str(folder), task="explanation", personalized=False))
    assert store.list_runs() == [] and not marker.exists()


def test_a_planted_pretraining_state_runs_nothing(tmp_path, demo_dataset, spiece_path):
    import torch

    from paprec_core.pretrain import STATE_FILE, PretrainConfig, pretrain

    out = tmp_path / "bb"
    out.mkdir()
    marker = tmp_path / "PWNED"
    torch.save({"config": _Payload(marker)}, out / STATE_FILE)
    cfg = PretrainConfig(tasks=["sequential"], epochs=1, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                         vocab_size=300, val_users=5)
    with pytest.raises(CheckpointError) as e:
        pretrain(demo_dataset, out, cfg, spiece=spiece_path, progress=False)
    msg = str(e.value)
    assert STATE_FILE in msg and "holds code" in msg and "will not be loaded" in msg and "\n" not in msg
    assert not marker.exists()


# --------------------------------------------------------------------------- the dashboard's port


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) that listen on ``port``."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, p = fields[1].split(":")
            if int(p, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                out.append(addr)
    return out


def test_the_dashboard_listens_on_loopback_only(tmp_path):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp on this system")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PAPREC_STORE": str(tmp_path / "runs.sqlite"), "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "streamlit.log", "w")
    # no --server.address: what the repository's .streamlit/config.toml says is what is tested
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.fileWatcherType", "none"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.time() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "streamlit.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < end, "streamlit did not become healthy"
            time.sleep(0.3)
        addrs = _listening(port)
        assert addrs and set(addrs) == {"0100007F"}, addrs  # 127.0.0.1, and no 0.0.0.0 / :: socket
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert "Network URL" not in (tmp_path / "streamlit.log").read_text()


def test_with_the_opt_in_an_explanation_search_reads_the_file(tmp_path, make_config, capsys):
    from paprec_core.cli import main
    from paprec_core.store import RunStore

    cfg = make_config(task="explanation", personalized=False, max_rounds=1, val_users=5, train_examples=8,
                      trigger_length=1, candidates=2)
    db = tmp_path / "runs.sqlite"
    argv = ["search", "--task", "explanation", "--data", cfg.data, "--backbone", cfg.backbone, "-l", "1", "-k", "2",
            "--criterion", "loss", "--max-rounds", "1", "--val-users", "5", "--train-examples", "8",
            "--device", "cpu", "--store", str(db)]
    assert main(argv) == 2 and "--trust-pickle" in capsys.readouterr().err
    assert main([*argv, "--trust-pickle"]) == 0
    assert [r["status"] for r in RunStore(db).list_runs()] == ["finished"]
