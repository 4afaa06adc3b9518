"""Training on several processes, GPUs and machines: torch's own distributed runtime (torch.distributed,
DistributedDataParallel, the torchrun launcher), and the few rules tinyear keeps around it.

A training run (`distill.train_run`) opens a `session`: under torchrun (WORLD_SIZE > 1 in the
environment) it joins the process group torchrun describes, gloo on the CPU and NCCL on CUDA (each
process on the GPU of its local rank), with a timeout on every collective (`$TINYEAR_DIST_TIMEOUT`
seconds, default 3600: rank 0 may spend that long making caches while the others wait); alone, it does
nothing. Inside, `rank`, `world_size`, `is_main` say who this process is; `broadcast`, `gather`,
`all_sum`, `barrier` are the collectives the loop needs (no-ops alone); `once(build)` makes a cache on
rank 0 first, then on the first process of every other machine (a hit where the cache folder is shared),
then on the rest, which read it: a cache is never made twice on one machine. `shard(order)` is this
rank's part of an epoch's draw, the way torch's DistributedSampler cuts its list. `launch(nproc, fn,
...)` runs `fn` in `nproc` processes on this machine through torch's elastic launcher (what torchrun
runs) and returns rank 0's result; a rank that fails makes it raise one `TinyearError` line.

The test hook `$TINYEAR_TEST_FAIL_RANK=R` (or `R@E`) makes rank R fail as epoch 1 (or E) starts
(`fail_if_asked`), so tests can check that a failed rank ends the whole run instead of leaving the
others waiting, and that the interrupted run resumes.

Imports torch and the standard library; never the training, data or command modules.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
import uuid

import numpy as np
import torch
import torch.distributed as tdist

from tinyear.device.errors import TinyearError

TIMEOUT_ENV = "TINYEAR_DIST_TIMEOUT"
FAIL_RANK_ENV = "TINYEAR_TEST_FAIL_RANK"
DEFAULT_TIMEOUT_S = 3600


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launched() -> bool:
    """Whether a launcher (torchrun, `launch`) started this process as one of several."""
    return _env_int("WORLD_SIZE", 1) > 1


def active() -> bool:
    """Whether a process group of more than one process is up."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    return tdist.get_rank() if active() else _env_int("RANK", 0) if launched() else 0


def world_size() -> int:
    return tdist.get_world_size() if active() else 1


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0) if launched() else 0


def is_main() -> bool:
    return rank() == 0


def _device_for(name: str) -> torch.device:
    """The device of this process: "auto" is CUDA when present, else the CPU; under a launcher, "cuda"
    (or auto with CUDA) is the GPU of this process's local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TinyearError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use "
                               "--device cpu or auto")
        if launched():
            if device.index is not None:
                raise TinyearError(f"--device {name} under a launcher: each process takes the GPU of its local "
                                   "rank; give --device cuda (or auto), and CUDA_VISIBLE_DEVICES to choose GPUs")
            if local_rank() >= torch.cuda.device_count():
                raise TinyearError(f"local rank {local_rank()} has no GPU ({torch.cuda.device_count()} visible); "
                                   "start at most as many processes per machine as GPUs")
            device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def session(device: str = "auto"):
    """Yield this process's torch.device, inside the process group when a launcher started several
    (gloo on the CPU, NCCL on CUDA; left again at the end if this call joined it)."""
    dev = _device_for(device)
    joined = False
    if launched() and not tdist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=_env_int(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
        tdist.init_process_group(backend, timeout=timeout, **({"device_id": dev} if dev.type == "cuda" else {}))
        joined = True
    if launched() and dev.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # the cores of this machine shared among its processes, not each process taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, _env_int("LOCAL_WORLD_SIZE", 1))))
    ok = False
    try:
        yield dev
        ok = True
    finally:
        if joined and tdist.is_initialized():
            if ok:  # leave together: a rank tearing gloo down while another still talks to it can abort
                tdist.barrier()  # ("terminate called without an active exception", seen once in CI)
            tdist.destroy_process_group()


def describe(device: torch.device) -> dict:
    """What run.json records: world size, backend and every process's host:device, by rank."""
    if not active():
        return {"world_size": 1, "backend": None, "devices": [f"{socket.gethostname()}:{device}"]}
    return {"world_size": world_size(), "backend": tdist.get_backend(),
            "devices": gather(f"{socket.gethostname()}:{device}")}


# -- collectives (no-ops alone) -------------------------------------------------------------------------


def barrier() -> None:
    if active():
        tdist.barrier()


def broadcast(obj):
    """rank 0's `obj` on every rank (any picklable object; others pass anything, e.g. None)."""
    if not active():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj) -> list:
    """Every rank's `obj`, by rank, on every rank."""
    if not active():
        return [obj]
    out = [None] * world_size()
    tdist.all_gather_object(out, obj)
    return out


def all_sum(values: dict) -> dict:
    """The sums over ranks of a dict of numbers (float64; ints stay ints)."""
    if not active():
        return values
    keys = sorted(values)
    device = torch.device("cuda", torch.cuda.current_device()) if tdist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return {k: (int(round(v)) if isinstance(values[k], int) else v) for k, v in zip(keys, t.cpu().tolist())}


def sync_buffers(module: torch.nn.Module) -> None:
    """rank 0's buffers (BatchNorm statistics) into every rank's module: DDP averages gradients, so the
    weights agree, but each rank's BatchNorm saw its own batches last."""
    if active():
        for buf in module.buffers():
            tdist.broadcast(buf.data, src=0)


def once(build):
    """`build()` made once per machine and shared: rank 0 first, then the first process of every other
    machine (which finds the cache where the folder is shared), then every other process, which reads
    what its machine made. Returns this rank's result."""
    if not active():
        return build()
    result = build() if rank() == 0 else None
    barrier()
    if rank() != 0 and local_rank() == 0:
        result = build()
    barrier()
    if local_rank() != 0:
        result = build()
    return result


def shard(order, r: int | None = None, w: int | None = None):
    """Rank r's part of an epoch's drawn index list: every w-th entry from r, as DistributedSampler cuts
    its list. The w parts are disjoint and together are the list (sizes differ by at most one)."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    return order[r::w]


def step_plan(n: int, batch_size: int, w: int) -> tuple[int, int, np.ndarray]:
    """How an epoch of n drawn clips runs on w ranks at a global batch of batch_size: (steps, clips per
    rank per step, global clips per step (steps,)). Every rank takes the same number of steps (DDP
    averages gradients at each), its shard cut into batches of ceil(batch_size / w); a rank whose
    shard ran out at the last step contributes an empty batch (see `train`). Alone: ceil(n / batch_size)
    steps of batch_size."""
    local = -(-batch_size // w)
    longest = -(-n // w)
    steps = max(1, -(-longest // local))
    lengths = np.array([len(range(r, n, w)) for r in range(w)])  # (w,) shard sizes
    starts = np.arange(steps) * local  # (steps,)
    per_step = np.clip(lengths[None, :] - starts[:, None], 0, local).sum(axis=1)  # (steps,)
    return steps, local, per_step


def fail_if_asked(epoch: int) -> None:
    """The test hook: fail on the rank named by $TINYEAR_TEST_FAIL_RANK ("R": at epoch 1, "R@E": at E)."""
    wanted = os.environ.get(FAIL_RANK_ENV)
    if not wanted:
        return
    who, _, when = wanted.strip().partition("@")
    if who == str(rank()) and epoch == int(when or 1):
        raise TinyearError(f"rank {rank()} failed on purpose at epoch {epoch} ({FAIL_RANK_ENV}, a test hook)")


# -- launching on this machine --------------------------------------------------------------------------


def _run_rank(fn, args, kwargs):
    """One launched process: `fn(*args, **kwargs)`, its result on rank 0 (None elsewhere)."""
    result = fn(*args, **kwargs)
    return result if _env_int("RANK", 0) == 0 else None


def launch(nproc: int, fn, *args, **kwargs):
    """fn(*args, **kwargs) in `nproc` processes on this machine, as `torchrun --nproc-per-node nproc`
    would start them (torch's elastic launcher, spawned processes; fn and its arguments must pickle).
    Returns rank 0's result. A rank that fails ends the others and raises one TinyearError line with
    its message. Under a launcher already: a one-line error (torchrun started the processes)."""
    if nproc <= 1:
        return fn(*args, **kwargs)
    if launched():
        raise TinyearError("--nproc under torchrun: the launcher already started the processes; drop --nproc")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in ("torch.distributed.elastic", "torch.multiprocessing", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # their failure reports; one line is ours
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"tinyear-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5,
                          start_method="spawn")
    threads_set = "OMP_NUM_THREADS" in os.environ
    if not threads_set:  # as torchrun does, but sharing the cores instead of 1 each; for the workers only
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    try:
        results = elastic_launch(config, _run_rank)(fn, args, kwargs)
    except ChildFailedError as exc:
        raise TinyearError(_failure_line(exc)) from None
    finally:
        if not threads_set:
            os.environ.pop("OMP_NUM_THREADS", None)
    return results[0]


def _failure_line(exc) -> str:
    r, failure = exc.get_first_failure()
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    message = str(message or "").strip().splitlines()
    text = message[-1] if message else ""
    for prefix in ("TinyearError: ", "tinyear.device.errors.TinyearError: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if not text or text.startswith("To enable traceback"):
        text = f"exit status {failure.exitcode}" if failure.exitcode >= 0 else f"signal {-failure.exitcode}"
    return f"rank {r} failed, so every process of the run was stopped: {text}"
