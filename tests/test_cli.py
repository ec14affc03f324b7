"End-to-end tests of the `mlfound` command line: a real training run, and the bad-argument cases."
import os, platform, re, shutil, subprocess, sys
from pathlib import Path

import pytest
import torch

from mlfound.training import mlp
from mlfound.datasets import get_mnist

CLI = [sys.executable, '-m', 'mlfound.cli']
DATA = 'mnist_t10k'   # the 8,000/2,000 split, offline with $MLFOUND_DATA


def run(*args, cwd=None, timeout=600):
    "Run the command line in a fresh process; return the CompletedProcess."
    env = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob('*'))


def test_train_end_to_end(tmp_path):
    out = tmp_path / 'runs'
    r = run('train', '--epochs', 1, '--lr', 0.1, '--bs', 256, '--data', DATA, '--out', out)
    assert r.returncode == 0, r.stderr
    assert DATA in r.stdout                                   # the dataset used is named
    m = re.search(rf'{DATA}: valid loss ([\d.]+), valid accuracy ([\d.]+)', r.stdout)
    assert m, r.stdout
    loss, acc = float(m[1]), float(m[2])
    assert 0 < loss < 1 and acc > 0.8, r.stdout
    assert files_under(out) == ['checkpoint.pth', 'loss.png', 'model.pth']   # no temporary files left
    assert (out / 'loss.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    model = mlp()
    model.load_state_dict(torch.load(out / 'model.pth', weights_only=True))
    _, _, x_valid, y_valid = get_mnist(DATA)
    with torch.no_grad(): got = (model(x_valid).argmax(1) == y_valid).float().mean().item()
    assert abs(got - acc) < 1e-4                              # the saved weights give the printed accuracy


@pytest.mark.parametrize('args, problem', [
    (['--epochs', '-1'], '--epochs must be a positive integer, got -1'),
    (['--epochs', 'three'], "argument --epochs: invalid int value: 'three'"),
    (['--data', 'cifar10'], "--data: unknown MNIST dataset 'cifar10'"),
    (['--bs', '0'], '--bs must be a positive integer'),
    (['--nproc', '0'], '--nproc must be a positive integer, got 0'),
    (['--nproc', 'two'], "argument --nproc: invalid int value: 'two'"),
    (['--nproc', '100000'], '--nproc 100000 is more than the'),
    (['--port', 'http'], "argument --port: invalid int value: 'http'"),
    (['--resume', '/nonexistent/run'], "--resume: no checkpoint.pth in '/nonexistent/run'"),
])
def test_bad_arguments(tmp_path, args, problem):
    r = run('train', '--out', tmp_path / 'runs', *args)
    assert r.returncode != 0
    assert r.stderr.count('\n') == 1 and problem in r.stderr, r.stderr
    assert files_under(tmp_path) == []                        # not even the output folder


def test_out_is_a_file(tmp_path):
    (tmp_path / 'runs').write_text('not a folder')
    r = run('train', '--epochs', 1, '--out', tmp_path / 'runs')
    assert r.returncode != 0
    assert r.stderr.count('\n') == 1 and 'exists and is not a folder' in r.stderr, r.stderr
    assert files_under(tmp_path) == ['runs'] and (tmp_path / 'runs').read_text() == 'not a folder'


def test_out_not_writable(tmp_path):
    "A folder we may not write to; as root (who may write anywhere) a path through a file stands in for it."
    if hasattr(os, 'geteuid') and os.geteuid() != 0:
        parent = tmp_path / 'readonly'
        parent.mkdir()
        parent.chmod(0o500)
        out, cause = parent / 'runs', 'Permission denied'
    else:
        (tmp_path / 'file').write_text('x')
        out, cause = tmp_path / 'file' / 'runs', 'Not a directory'
    try:
        r = run('train', '--epochs', 1, '--out', out)
        assert r.returncode != 0
        assert r.stderr.count('\n') == 1 and 'cannot write to' in r.stderr and cause in r.stderr, r.stderr
        assert not out.exists()
    finally:
        if out.parent.name == 'readonly': out.parent.chmod(0o700)


def test_help_lists_subcommands():
    r = run('--help')
    assert r.returncode == 0 and all(re.search(rf'^\s+{cmd}\s', r.stdout, re.M) for cmd in ('train', 'bench')), r.stdout
    r = run()
    assert r.returncode != 0 and 'train' in r.stderr
    r = run('fly')
    assert r.returncode != 0 and "unknown command 'fly'" in r.stderr


def test_unknown_benchmark():
    r = run('bench', 'gpu')
    assert r.returncode == 2
    assert r.stderr.count('\n') == 1 and "invalid choice: 'gpu'" in r.stderr and 'matmul' in r.stderr, r.stderr
    assert '==' not in r.stdout, r.stdout                     # no benchmark started


def test_train_help():
    r = run('train', '--help')
    assert r.returncode == 0
    for opt in ('--epochs', '--lr', '--bs', '--data', '--out', '--no-bars', '--nproc', '--port', '--resume'): assert opt in r.stdout, opt


@pytest.mark.skipif(shutil.which('mlfound') is None, reason='the `mlfound` script is not installed (pip install -e .)')
def test_console_script():
    r = subprocess.run(['mlfound', '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'train' in r.stdout


def test_import_loads_no_compiler():
    "`mlfound train` needs neither numba nor the benchmarks: `mlfound.cli` imports them only when `mlfound bench` runs."
    code = "import sys, mlfound.cli; print(sorted(m for m in ('numba', 'llvmlite', 'mlfound.bench', 'mlfound.matmul') if m in sys.modules))"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '[]', r.stdout


def test_bench_does_not_import_cli():
    "No cycle: the benchmarks stand without the command line, and `python -m mlfound.bench` checks its argument itself."
    r = subprocess.run([sys.executable, '-c', "import sys, mlfound.bench; print('mlfound.cli' in sys.modules)"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == 'False', (r.stdout, r.stderr[-2000:])
    r = subprocess.run([sys.executable, '-m', 'mlfound.bench', 'gpu'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'usage: python -m mlfound.bench' in r.stderr, (r.returncode, r.stderr[-2000:])


@pytest.mark.parametrize('args, problem', [
    (['--isa', 'avx1024'], "argument --isa: invalid choice: 'avx1024'"),
    (['--dtype', 'float16'], "argument --dtype: invalid choice: 'float16'"),
    (['--threads', '0'], '--threads must be a positive integer, got 0'),
    (['--sizes', '1024,x'], '--sizes must be positive sizes n or mxkxn'),
])
def test_bench_bad_options(args, problem):
    "A bad option of `mlfound bench` is one line on stderr, before any benchmark or new process starts."
    r = run('bench', 'matmul', *args)
    assert r.returncode == 2
    assert r.stderr.count('\n') == 1 and problem in r.stderr, r.stderr
    assert '==' not in r.stdout, r.stdout


def test_bench_options_only_for_matmul():
    r = run('bench', 'pngs', '--dtype', 'float64')
    assert r.returncode == 2 and "--dtype and --sizes apply to the matmul benchmark, not 'pngs'" in r.stderr, r.stderr


def _runs_avx2() -> bool:
    "Whether the avx2 profile's code can run here: an x86 CPU with AVX2 and FMA."
    import llvmlite.binding as llvm
    host = llvm.get_host_cpu_features()
    return platform.machine() in ('x86_64', 'AMD64') and bool(host.get('avx2') and host.get('fma'))


@pytest.mark.skipif(not _runs_avx2(), reason='the avx2 profile needs an x86 CPU with AVX2 and FMA')
def test_bench_under_avx2_profile():
    "`--isa avx2` reruns the benchmark in a process where numba and PyTorch are held to AVX2, and says what ran."
    r = run('bench', 'matmul', '--isa', 'avx2', '--threads', '1', '--dtype', 'float64', '--sizes', '40')
    assert r.returncode == 0, r.stderr[-2000:]
    first = ' '.join(r.stdout.split('\n==')[0].split())   # the profile's line, wrapped to fit the page
    assert first.startswith('== machine profile avx2: NUMBA_CPU_NAME=haswell') and 'NUMBA_NUM_THREADS=1' in first, first
    flat = ' '.join(r.stdout.split())   # the table's header wraps to fit the docs' column: compare its words
    assert 'float64; numba targets haswell; goto runs avx2-f64 (6×8' in flat, r.stdout
    assert 'numba 1 threads' in flat and 'PyTorch uses AVX2' in flat, r.stdout


def test_bench_threads_native():
    "`--threads` alone runs under the native profile, with that many threads for numba and PyTorch."
    r = run('bench', 'matmul', '--threads', '1', '--sizes', '40')
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith('== machine profile native: OMP_NUM_THREADS=1'), r.stdout[:300]
    flat = ' '.join(r.stdout.split())
    assert 'torch 2' in flat and 'with 1 threads' in flat and 'numba 1 threads' in flat, r.stdout
