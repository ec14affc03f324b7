"""A lesson runs in one click: the built wheel, installed by a notebook's own setup cell into a fresh environment.

What a reader who opens a lesson on Colab gets: PyTorch and a Jupyter kernel, no mlfound. The test builds the wheel
(`python -m build --wheel`, from a copy of the package files, so the tree stays as it is), makes a fresh venv with
only torch and ipykernel in it, copies a light notebook into an empty folder and runs it there with nbclient on
that venv's kernel. Its first cell (tools/setup_cell.py) finds no mlfound and runs `%pip install -q mlfound`; pip is
pointed at the wheel (`PIP_FIND_LINKS`, and a constraint that pins it, so a release of the same name on the package
registry cannot stand in for it) and takes mlfound's other requirements from the registry as usual. The notebook then
reads MNIST from `$MLFOUND_DATA` and must pass, which also proves the wheel holds everything `import mlfound` needs.
About 65 s of work on 2 cores (the fresh venv 45 s, the notebook with its install 20 s, the wheel 1 s); the
report line gives each part's time.
"""
from __future__ import annotations
import json, os, re, shutil, subprocess, sys, time
from pathlib import Path

import pytest

from conftest import NBS, ROOT, skip_or_fail

NOTEBOOK = '02_mnist_basics.ipynb'      # a light lesson: data loading, a model, training by hand; about 30 s to run
# what a Colab-like machine has before the notebook runs: the PyTorch release of this environment (2.13.0 here, a
# CPU build on local disk; GitHub's runners take the CPU build from PIP_EXTRA_INDEX_URL, see test.yaml)
def torch_requirement() -> str:
    import torch
    return os.environ.get('MLFOUND_WHEEL_TORCH') or f"torch=={torch.__version__.split('+')[0]}"
PACKAGE_FILES = ['setup.py', 'settings.ini', 'README.md', 'LICENSE', 'MANIFEST.in', 'pyproject.toml']

def _run(cmd:list, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f'{" ".join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r

def build_wheel(dest:Path) -> Path:
    "Build mlfound's wheel from a copy of the package files into `dest`; return its path."
    src = dest/'src'
    src.mkdir(parents=True)
    for f in PACKAGE_FILES:
        if (ROOT/f).exists(): shutil.copy(ROOT/f, src/f)
    shutil.copytree(ROOT/'mlfound', src/'mlfound', ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    # first without isolation: the setuptools already installed builds it, without fetching a build environment;
    # where that setuptools is missing or too old for it, in build's own isolated environment (from the registry)
    cmd = [sys.executable, '-m', 'build', '--wheel', '--outdir', dest/'dist', src]
    r = subprocess.run([str(c) for c in cmd[:4] + ['--no-isolation'] + cmd[4:]], capture_output=True, text=True)
    if r.returncode: _run(cmd)
    wheels = list((dest/'dist').glob('mlfound-*.whl'))
    assert len(wheels) == 1, f'expected one wheel in {dest/"dist"}, found {wheels}'
    return wheels[0]

def test_notebook_installs_the_wheel_and_runs(tmp_path, report):
    try: import build, nbclient, nbformat   # noqa: F401
    except ImportError as e: skip_or_fail(f'{e.name} is not installed (pip install -e ".[dev]")')
    data = os.environ.get('MLFOUND_DATA')
    if not data: skip_or_fail('MLFOUND_DATA is not set: the notebook reads MNIST from there (no network here)')
    times, t0 = {}, time.perf_counter()
    wheel = build_wheel(tmp_path/'wheel')
    version = wheel.name.split('-')[1]
    times['wheel'] = time.perf_counter() - t0

    # a fresh venv as Colab is: PyTorch and a kernel, no mlfound
    t0 = time.perf_counter()
    venv = tmp_path/'venv'
    _run([sys.executable, '-m', 'venv', venv])
    py = venv/('Scripts/python.exe' if os.name == 'nt' else 'bin/python')
    TORCH = torch_requirement()
    _run([py, '-m', 'pip', 'install', '-q', TORCH, 'ipykernel'])
    r = subprocess.run([py, '-c', 'import mlfound'], capture_output=True, text=True, cwd=tmp_path)   # not from ROOT
    assert r.returncode != 0, 'the fresh venv already has mlfound: the test would not try the setup cell'
    times['venv'] = time.perf_counter() - t0

    # a kernelspec for that python, the wheel and the data named in its environment
    constraint = tmp_path/'constraint.txt'
    constraint.write_text(f'mlfound=={version}\n')
    env = {'PIP_FIND_LINKS': ' '.join(filter(None, [str(wheel.parent), os.environ.get('PIP_FIND_LINKS')])),
           'PIP_CONSTRAINT': ' '.join(filter(None, [str(constraint), os.environ.get('PIP_CONSTRAINT')])),
           'MLFOUND_DATA': str(Path(data).resolve()), 'MLFOUND_MNIST': os.environ.get('MLFOUND_MNIST', 'mnist_t10k'),
           'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'), 'PYTHONDONTWRITEBYTECODE': '1'}
    kdir = tmp_path/'jupyter'/'kernels'/'mlfound-wheel'
    kdir.mkdir(parents=True)
    (kdir/'kernel.json').write_text(json.dumps({'argv': [str(py), '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
                                                'display_name': 'mlfound wheel test', 'language': 'python', 'env': env}))

    # the notebook, alone in an empty folder, run on that kernel
    import nbformat
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient
    work = tmp_path/'work'
    work.mkdir()
    shutil.copy(NBS/NOTEBOOK, work/NOTEBOOK)
    nb = nbformat.read(work/NOTEBOOK, as_version=4)
    first = ''.join(nb.cells[0].source)
    assert '%pip install' in first and 'mlfound' in first, f'{NOTEBOOK} does not start with the setup cell: {first[:200]!r}'
    t0 = time.perf_counter()
    km = KernelManager(kernel_name='mlfound-wheel', kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kdir.parent)]))
    client = NotebookClient(nb, km=km, timeout=600, resources={'metadata': {'path': str(work)}})
    client.execute()
    times['notebook'] = time.perf_counter() - t0

    # the setup cell installed this wheel into the fresh venv
    r = _run([py, '-c', 'import mlfound, sys; print(mlfound.__version__); print(mlfound.__file__)'], cwd=tmp_path)
    got_version, where = r.stdout.split()
    assert got_version == version and Path(where).resolve().is_relative_to(venv.resolve()), (got_version, where)
    pip_out = re.sub(r'\x1b\[[0-9;]*m', '', ''.join(o.get('text', '') for o in nb.cells[0].get('outputs', []) if o.get('output_type') == 'stream'))
    report(f'wheel: {wheel.name} built in {times["wheel"]:.0f}s; fresh venv with {TORCH} and ipykernel in '
           f'{times["venv"]:.0f}s; {NOTEBOOK} installed it with its setup cell and ran in {times["notebook"]:.0f}s '
           f'({sum(times.values()):.0f}s in all)' + (f'; pip said: {pip_out.strip()[:200]}' if pip_out.strip() else ''))
