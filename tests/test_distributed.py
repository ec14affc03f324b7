"Data-parallel training on 2 CPU processes (gloo), checkpoints, and mixed precision: end to end, through the command line."
import os, re, signal, socket, subprocess, sys, threading, time
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fastcore import test as fct

from mlfound.core import set_seed
from mlfound.datasets import get_mnist
from mlfound.training import mlp, Dataset, get_dls, SGD
from mlfound.losses import cross_entropy
from mlfound.learner import Learner
from mlfound.norm import BatchNorm, LayerNorm
from mlfound.distributed import (DistBatchSampler, MixedPrecisionCB, first_grads, first_batch, grads_bound, _torchrun)

CLI = [sys.executable, '-m', 'mlfound.cli']
DATA = 'mnist_t10k'   # 8,000 training and 2,000 validation images, offline with $MLFOUND_DATA
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason='this PyTorch has no torch.distributed')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('', 0))
        return s.getsockname()[1]


def env():
    return {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'), 'PYTHONUNBUFFERED': '1'}


def train(*args, timeout=300):
    return subprocess.run([*CLI, 'train', '--data', DATA, '--no-bars', *map(str, args)], capture_output=True, text=True,
                          env=env(), timeout=timeout)


def metrics(stdout):
    m = re.search(rf'{DATA}: valid loss ([\d.]+), valid accuracy ([\d.]+)', stdout)
    assert m, stdout
    return float(m[1]), float(m[2])


def test_sampler_parts():
    "Every index once per epoch across the ranks (validation), equal shares (training), a new order every epoch."
    for n, bs, world in [(10, 4, 2), (1000, 64, 2), (1001, 63, 3), (5, 8, 4), (0, 4, 2)]:
        val = [list(DistBatchSampler(n, bs, r, world, shuffle=True, train=False)) for r in range(world)]
        fct.test_eq(sorted(i for p in val for b in p for i in b.tolist()), list(range(n)))
        trn = [list(DistBatchSampler(n, bs, r, world, shuffle=True)) for r in range(world)]
        fct.test_eq(len({len(p) for p in trn}), 1)
        for step in zip(*trn): fct.test_eq(len({len(b) for b in step}), 1)
        got = [i for p in trn for b in p for i in b.tolist()]
        assert len(got) == len(set(got)) and n - len(got) < world
    s = DistBatchSampler(100, 10, 1, 2, shuffle=True)
    e0 = torch.cat(list(s)); s.set_epoch(1); e1 = torch.cat(list(s))
    assert not torch.equal(e0, e1)
    one = list(DistBatchSampler(100, 10, 0, 1, shuffle=True, seed=3))
    two = [list(DistBatchSampler(100, 10, r, 2, shuffle=True, seed=3)) for r in range(2)]
    for b, b0, b1 in zip(one, *two): fct.test_eq(torch.cat([b0, b1]), b)   # one process's batch = the ranks' parts


def test_grads_two_processes_equal_one(tmp_path):
    "DDP's averaged gradients on 2 x 32 images equal one process's on the 64, within the derived float32 bound."
    r = _torchrun(2, ['mlfound.distributed', 'grads', str(tmp_path)])
    assert r.returncode == 0, r.stderr[-3000:]
    two = torch.load(tmp_path / 'grads.pth', weights_only=True)
    one = first_grads(data=DATA)
    set_seed(42); model = mlp()
    xb, yb = first_batch(data=DATA)
    bound = grads_bound(model, xb, yb)
    for k in one:
        assert ((one[k] - two[k]).abs() <= bound[k]).all(), k
        assert ((2 * two[k] - one[k]).abs() > bound[k]).any(), k   # the bound would catch a sum instead of a mean


GROUP_LEFT = """
import os, torch
from torch import nn
from mlfound.distributed import run_in_group
def step():
    model = nn.parallel.DistributedDataParallel(nn.Linear(3, 2))
    model(torch.ones(4, 3)).sum().backward()
run_in_group(step)
names = [open(f'/proc/self/task/{t}/comm').read().strip() for t in os.listdir('/proc/self/task')]
print('threads:', sorted(names))
"""

@pytest.mark.skipif(not Path('/proc/self/task').exists(), reason='thread names are read from /proc (Linux)')
def test_group_threads_gone_after_run(tmp_path):
    "After `run_in_group` with DDP, gloo's threads are joined: none is left to abort the interpreter's shutdown."
    e = {**env(), 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(free_port()), 'RANK': '0', 'WORLD_SIZE': '1', 'LOCAL_RANK': '0'}
    r = subprocess.run([sys.executable, '-c', GROUP_LEFT], capture_output=True, text=True, env=e, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(l for l in r.stdout.splitlines() if l.startswith('threads:'))
    assert 'gloo' not in line, line


def test_two_processes_train_like_one(tmp_path):
    "`--nproc 2` with the same global batch: accuracy within half a point of `--nproc 1`; rank 0 alone writes, atomically."
    r1 = train('--epochs', 1, '--bs', 64, '--out', tmp_path / 'one')
    r2 = train('--epochs', 1, '--bs', 64, '--out', tmp_path / 'two', '--nproc', 2, '--port', free_port())
    assert r1.returncode == 0, r1.stderr[-3000:]
    assert r2.returncode == 0, r2.stderr[-3000:]
    (loss1, acc1), (loss2, acc2) = metrics(r1.stdout), metrics(r2.stdout)
    # the same global batches, the same steps up to rounding (see test above): predictions can differ only where
    # two logits are within rounding of each other, a handful of the 2,000 images at most; half a point is 10
    assert abs(acc1 - acc2) <= 0.005 and abs(loss1 - loss2) <= 0.02 * loss1, (r1.stdout, r2.stdout)
    assert acc2 > 0.85, r2.stdout
    out = tmp_path / 'two'
    fct.test_eq(sorted(p.name for p in out.iterdir()), ['checkpoint.pth', 'loss.png', 'model.pth'])   # no temporary files
    fct.test_eq(r2.stdout.count('wrote '), 1)                       # one process reported writing
    fct.test_eq(len(re.findall(r'^\s+0\s', r2.stdout, re.M)), 1)    # and one printed the epoch's row
    assert '2 processes on this machine, 32 images each' in r2.stdout
    # rank 0 printed the metrics of the whole validation set, reduced over both processes, not of its half:
    model = mlp(); model.load_state_dict(torch.load(out / 'model.pth', weights_only=True))
    _, _, xv, yv = get_mnist(DATA)
    with torch.no_grad(): preds = model(xv)
    assert abs((preds.argmax(1) == yv).float().mean().item() - acc2) < 1e-4    # printed with 4 decimals
    assert abs(F.cross_entropy(preds, yv).item() - loss2) < 1e-4


def _children(pid: int) -> list[int]:
    "The pids of the processes whose parent is `pid` (Linux /proc)."
    out = []
    for d in Path('/proc').iterdir():
        if d.name.isdigit():
            try:
                if int((d / 'stat').read_text().rsplit(')', 1)[1].split()[1]) == pid: out.append(int(d.name))
            except (OSError, IndexError, ValueError): pass
    return out


@pytest.mark.skipif(not Path('/proc/self/stat').exists(), reason='finds the worker processes through /proc')
def test_killed_rank_stops_the_run(tmp_path):
    "SIGKILL one rank mid-run: the run ends within 60 s with an error naming that rank, and writes no model.pth or loss.png."
    p = subprocess.Popen([*CLI, 'train', '--data', DATA, '--no-bars', '--epochs', '30', '--nproc', '2', '--port', str(free_port()),
                          '--out', str(tmp_path / 'runs')], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    watchdog = threading.Timer(180, p.kill)        # whatever happens, this test does not hang
    watchdog.start()
    try:
        for line in p.stdout:                       # the first epoch's row: both processes are training
            if re.match(r'^\s+0\s', line): break
        workers = [c for c in _children(p.pid) if b'spawn_main' in Path(f'/proc/{c}/cmdline').read_bytes()]
        fct.test_eq(len(workers), 2)
        victim = workers[-1]
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        _, err = p.communicate(timeout=60)
        secs = time.monotonic() - t0
    finally:
        watchdog.cancel()
        if p.poll() is None: p.kill()
    assert p.returncode == 1 and secs < 60, (p.returncode, secs, err[-2000:])
    assert re.search(rf'rank \d \(pid {victim}\) was killed by SIGKILL', err), err[-2000:]
    assert 'model.pth and loss.png were not written' in err.splitlines()[-1], err[-2000:]
    left = sorted(q.name for q in (tmp_path / 'runs').iterdir())
    assert left in ([], ['checkpoint.pth']), left   # at most the last epoch's whole checkpoint, no temporary file
    for c in workers: assert not Path(f'/proc/{c}').exists() or 'Z' in Path(f'/proc/{c}/stat').read_text().split()[2]


def test_resumed_run_matches(tmp_path):
    "1 epoch, then `--resume` to 2: the weights equal those of 2 uninterrupted epochs, bit for bit."
    full, part, rest = tmp_path / 'full', tmp_path / 'part', tmp_path / 'rest'
    r1 = train('--epochs', 2, '--bs', 256, '--out', full); assert r1.returncode == 0, r1.stderr[-2000:]
    r = train('--epochs', 1, '--bs', 256, '--out', part); assert r.returncode == 0, r.stderr[-2000:]
    r2 = train('--epochs', 2, '--bs', 256, '--out', rest, '--resume', part); assert r2.returncode == 0, r2.stderr[-2000:]
    # Exact, by construction: the same program in processes with the same thread count runs the same float32
    # operations on the same numbers in the same order (the checkpoint holds weights, momentum and RNG states
    # bit for bit, the batch order comes from seed + epoch), and PyTorch's CPU kernels are deterministic for a
    # given thread count and instruction set, both fixed within this test.
    a, b = (torch.load(d / 'model.pth', weights_only=True) for d in (full, rest))
    for k in a: assert torch.equal(a[k], b[k]), k
    fct.test_eq(metrics(r2.stdout), metrics(r1.stdout))
    assert 'resuming from' in r2.stdout


def test_bad_run_options(tmp_path):
    "A bad --nproc, --bs for it, a port in use, or a bad --resume: one line on stderr, nothing started or written."
    with socket.socket() as s:
        s.bind(('', 0)); s.listen()
        busy = s.getsockname()[1]
        for args, problem in ((['--nproc', 0], '--nproc must be a positive integer, got 0'),
                              (['--nproc', 10**4], 'is more than the'),
                              (['--nproc', 2, '--bs', 63], '--bs 63 must be a multiple of --nproc 2'),
                              (['--nproc', 2, '--port', busy], f'port {busy} is in use'),
                              (['--resume', tmp_path], '--resume: no checkpoint.pth in')):
            if args[:2] == ['--nproc', 2] and (os.cpu_count() or 1) < 2: continue
            r = train('--out', tmp_path / 'runs', *args)
            assert r.returncode == 2 and r.stderr.count('\n') == 1 and problem in r.stderr, (args, r.stderr)
            assert not (tmp_path / 'runs').exists()


def test_mixed_precision_keeps_float32_statistics():
    "Under bfloat16 autocast, BatchNorm's running statistics, LayerNorm and the loss stay float32."
    set_seed(0)
    x = torch.randn(64, 20) * 3 + 1
    bn, ln, lin = BatchNorm(20), LayerNorm(20), torch.nn.Linear(20, 20)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        h = lin(x)
        assert h.dtype == torch.bfloat16
        out_bn, out_ln = bn(h), ln(h)
        loss = cross_entropy(h, torch.randint(0, 20, (64,)))
    fct.test_eq((bn.running_mean.dtype, bn.running_var.dtype, out_bn.dtype, out_ln.dtype, loss.dtype), (torch.float32,) * 5)
    var, mean = torch.var_mean(h.float(), 0, correction=0)     # the statistics of the bfloat16 values, in float32
    fct.test_close(bn.running_mean, 0.1 * mean, eps=1e-6)          # a float32 lerp of 20 numbers: a few ulps
    fct.test_close(bn.running_var, 0.9 + 0.1 * var * 64 / 63, eps=1e-5)


def test_mixed_precision_trains():
    "`MixedPrecisionCB` (bfloat16 on the CPU) replaces `TrainCB` and still trains the MLP to its float32 accuracy, about."
    x, y, xv, yv = get_mnist(DATA)
    accs = []
    for cbs in ([], [MixedPrecisionCB()]):
        set_seed(42)
        learn = Learner(mlp(), get_dls(Dataset(x, y), Dataset(xv, yv), 128), F.cross_entropy, lr=0.1,
                        opt_func=partial(SGD, mom=0.9), cbs=cbs)
        learn.fit(1)
        accs.append(learn.metrics['valid_acc'])
    # bfloat16 keeps 8 significant bits: the run differs from float32's far beyond rounding, but not in what it learns
    assert accs[1] > 0.88 and abs(accs[0] - accs[1]) < 0.02, accs
