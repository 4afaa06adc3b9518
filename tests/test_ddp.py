"""Training on several processes (DistributedDataParallel, gloo on the CPU): the epoch's shards, the
step plan, a real two-process run through the command line under torchrun (one run folder, world size
2 in run.json, a rank that fails ends the run, the interrupted run resumes, the checkpoint exports),
and `--nproc` (torch's launcher from inside tinyear) turning a failed rank into one error line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyear.host import dist, runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import train_data  # noqa: E402

TIMEOUT = 300  # a hang would show as this, far above a run's ~30 s


# -- the sampler and the step plan ----------------------------------------------------------------------


@pytest.mark.parametrize("balance", ["none", "class"])
def test_shards_are_disjoint_and_cover_the_epoch_draw(balance):
    from tinyear.host.train import draw_weights

    y = np.repeat(np.arange(3), [5, 11, 4])  # (20,) an unbalanced label set
    for n_world in (1, 2, 3, 4, 7):
        gen = torch.Generator().manual_seed(3)
        weights = draw_weights(y, None, balance)
        order = (torch.randperm(len(y), generator=gen) if weights is None
                 else torch.multinomial(weights, len(y), replacement=True, generator=gen))
        positions = torch.arange(len(order))
        parts = [dist.shard(positions, r, n_world) for r in range(n_world)]
        seen = torch.cat(parts).sort().values
        assert torch.equal(seen, positions)  # disjoint (no position twice) and covering (every position)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        drawn = torch.cat([dist.shard(order, r, n_world) for r in range(n_world)])
        assert sorted(drawn.tolist()) == sorted(order.tolist())  # the same draw, balance and all


def test_step_plan_gives_every_rank_the_same_steps_and_alone_the_old_ones():
    for n in (1, 7, 16, 17, 100, 113):
        for batch in (1, 4, 16, 64):
            steps, local, per_step = dist.step_plan(n, batch, 1)
            assert (steps, local) == (max(1, -(-n // batch)), batch) and per_step.sum() == n
            for w in (2, 3, 4):
                if n < w:
                    continue
                steps, local, per_step = dist.step_plan(n, batch, w)
                assert local == -(-batch // w) and per_step.sum() == n
                for r in range(w):  # what each rank's loop takes, step by step, is its whole shard
                    shard = list(range(n))[r::w]
                    taken = [shard[s * local:(s + 1) * local] for s in range(steps)]
                    assert sum(taken, []) == shard
                assert (per_step > 0).all() and (per_step <= w * local).all()


def _shard_gradients(x, y):
    """On each of the launched ranks: a tiny model's gradient through DDP on this rank's shard, the loss
    weighted by the shard's share of the batch as the training loop weights it."""
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    with dist.session("cpu"):
        torch.manual_seed(0)
        model = torch.nn.Linear(x.shape[1], 3)
        net = DistributedDataParallel(model) if dist.active() else model
        idx = dist.shard(torch.arange(len(y)))
        loss = F.cross_entropy(net(x[idx]), y[idx]) * (len(idx) * dist.world_size() / len(y))
        loss.backward()
        return [p.grad.clone() for p in model.parameters()], dist.world_size()


@pytest.mark.slow
def test_weighted_shard_gradients_averaged_by_ddp_are_the_whole_batch_gradient():
    x, y = torch.randn(5, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 2, 1, 1, 0])
    alone, _ = _shard_gradients(x, y)
    together, world = dist.launch(2, _shard_gradients, x, y)  # shards of 3 and 2 clips: unequal on purpose
    assert world == 2
    for a, b in zip(alone, together):
        assert torch.allclose(a, b, atol=1e-6)


def test_alone_the_collectives_are_no_ops_and_the_cli_runs_as_a_module():
    assert not dist.active() and dist.world_size() == 1 and dist.is_main()
    assert dist.broadcast({"a": 1}) == {"a": 1} and dist.gather(3) == [3] and dist.all_sum({"x": 2}) == {"x": 2}
    assert dist.once(lambda: 5) == 5
    proc = subprocess.run([sys.executable, "-m", "tinyear.host.cli", "teacher", "--help"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and "--nproc" in proc.stdout and "torchrun" in proc.stdout


def test_launching_again_under_a_launcher_is_one_line(monkeypatch, tmp_path):
    from tinyear.device.errors import TinyearError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TinyearError, match="drop --nproc"):
        dist.launch(2, print)
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "TINYEAR_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "tinyear.host.cli", "pipeline", "--quick", "--out", str(tmp_path / "p")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "tinyear: error: the pipeline starts its own training processes: run it once with --nproc N, not under "
        "torchrun (for several machines, run its steps under torchrun: docs/SCALE.md)"], proc.stderr


# -- two processes through the command line ------------------------------------------------------------


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return train_data.make_dataset(tmp_path_factory.mktemp("ddp") / "tones", per_word=40)


def _env(tmp: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", dist.FAIL_RANK_ENV)}
    return {**env, "PYTHONWARNINGS": "ignore", "TINYEAR_CACHE": str(tmp / "cache"), **extra}


def _train_args(data: Path, out: Path, *more) -> list[str]:
    return ["distill", str(data), "--words", *train_data.WORDS, "--no-teacher", "--out", str(out), "--epochs", "3",
            "--batch-size", "16", "--variants", "2", "--jobs", "1", "--quiet", *more]


def _torchrun(args, env) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "tinyear.host.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=ROOT)


@pytest.mark.slow
def test_two_processes_under_torchrun_fail_resume_finish_and_export(tones, tmp_path):
    out = tmp_path / "run"
    # rank 1 fails as epoch 2 starts: the whole run stops (no hang), nothing looks finished
    failed = _torchrun(_train_args(tones, out), _env(tmp_path, **{dist.FAIL_RANK_ENV: "1@2"}))
    assert failed.returncode != 0, failed.stderr[-3000:]
    ours = [line for line in failed.stderr.splitlines() if line.startswith("tinyear: error: ")]
    assert len(ours) == 1 and "rank 1 failed on purpose at epoch 2" in ours[0], failed.stderr[-3000:]
    assert runs.run_state(out) == "resume" and not (out / runs.RUN_JSON).exists()

    done = _torchrun(_train_args(tones, out, "--resume", "--json"), _env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1  # rank 0 alone reports
    info = json.loads(printed[0])
    assert info["distributed"]["world_size"] == 2 and info["distributed"]["backend"] == "gloo"
    assert len(info["distributed"]["devices"]) == 2 and info["epochs_run"] == 3
    assert json.loads((out / runs.RUN_JSON).read_text())["distributed"]["world_size"] == 2
    with open(out / runs.LOG) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]  # one writer, resumed at epoch 2
    assert sorted(p.name for p in out.iterdir()) == sorted([runs.BEST, runs.LAST, runs.LOG, runs.CURVES, runs.RUN_JSON])
    model, meta = runs.load_run(out, "student")
    assert meta["run"]["distributed"]["world_size"] == 2 and model(torch.zeros(2, *meta["frontend_config"].feature_shape)).shape == (2, len(meta["labels"]))

    bundle = tmp_path / "ddp.tinyear"
    exported = subprocess.run([sys.executable, "-m", "tinyear.host.cli", "export", str(out), "--out", str(bundle),
                               "--calibration", "20", "--tflm-samples", "4", "--json"],
                              capture_output=True, text=True, timeout=TIMEOUT, env=_env(tmp_path), cwd=ROOT)
    assert exported.returncode == 0, exported.stderr[-3000:]
    from tinyear.device.bundle import read_bundle

    assert read_bundle(bundle).labels == meta["labels"]


@pytest.mark.slow
def test_nproc_turns_a_failed_rank_into_one_line(tones, tmp_path):
    cmd = [sys.executable, "-m", "tinyear.host.cli", *_train_args(tones, tmp_path / "run", "--nproc", "2")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
                          env=_env(tmp_path, **{dist.FAIL_RANK_ENV: "1"}))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("tinyear: error: rank 1 failed") and "on purpose at epoch 1" in lines[0]
    assert not (tmp_path / "run" / runs.RUN_JSON).exists()


@pytest.mark.slow
def test_teacher_outputs_shared_out_among_ranks_equal_one_process(tones, tmp_path):
    teacher = tmp_path / "teacher"
    args = ["teacher", str(tones), "--words", *train_data.WORDS, "--out", str(teacher), "--epochs", "1",
            "--batch-size", "16", "--variants", "2", "--jobs", "1", "--quiet"]
    made = subprocess.run([sys.executable, "-m", "tinyear.host.cli", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=_env(tmp_path / "t"), cwd=ROOT)
    assert made.returncode == 0, made.stderr[-3000:]
    distill = ["distill", str(tones), "--words", *train_data.WORDS, "--teacher", str(teacher), "--teacher-cache",
               "--epochs", "1", "--batch-size", "16", "--variants", "2", "--jobs", "2", "--quiet"]
    alone = subprocess.run([sys.executable, "-m", "tinyear.host.cli", *distill, "--out", str(tmp_path / "s1")],
                           capture_output=True, text=True, timeout=TIMEOUT, env=_env(tmp_path / "one"), cwd=ROOT)
    assert alone.returncode == 0, alone.stderr[-3000:]
    two = _torchrun([*distill, "--out", str(tmp_path / "s2")], _env(tmp_path / "two"))  # a fresh cache: made here
    assert two.returncode == 0, two.stderr[-3000:]
    one_files = sorted((tmp_path / "one" / "cache" / "features").glob("*.npy"))
    two_files = sorted((tmp_path / "two" / "cache" / "features").glob("*.npy"))
    assert [p.name for p in one_files] == [p.name for p in two_files]  # one file each: made once, not per rank
    assert any(p.name.startswith("teacher-") for p in two_files)
    for a, b in zip(one_files, two_files):
        assert np.array_equal(np.load(a), np.load(b)), a.name  # features by rank 0, teacher outputs by blocks
