"""Notebooks run the way users run them: on a real `python3` Jupyter kernel, not nbdev_test's in-process shell.

This is the notebooks' second machine. `nbdev_test` runs them natively; `python tools/test.py` runs this file
under another machine profile (by default `avx2` with 3 threads: another vector width, BLAS code path and
thread count), which the kernels inherit from the environment. Each run has its own purpose:

- every notebook in nbs/ (index included) runs top to bottom in a fresh kernel with cwd = nbs/ (as JupyterLab
  does), in memory: tracked notebooks are never rewritten; cells nbdev_test skips (`#| eval: false`, the
  `tst_flags` of settings.ini, `skip_exec` front matter) are skipped here too;
- the training notebook runs twice in that same kernel, and must print the same results (it is seeded);
- a notebook opened from another working directory still finds its data;
- interrupting a training cell leaves the kernel usable, the model finite and trainable, and no gradients behind.

Data settings come from the environment, as in CI (MLFOUND_DATA, MLFOUND_MNIST). A cell may take up to
$MLFOUND_CELL_TIMEOUT seconds (default 600).
"""
from __future__ import annotations
import copy, hashlib, os, re, time
from pathlib import Path

import nbformat, pytest, yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from fastcore.ansi import strip_ansi
from nbdev.config import get_config
from nbdev.process import extract_directives

from conftest import NBS, ROOT, notebooks, training_notebook

CELL_TIMEOUT = int(os.environ.get('MLFOUND_CELL_TIMEOUT', 600))
TST_FLAGS = set(get_config(path=ROOT).tst_flags.replace('|', ' ').split())

# ---------------------------------------------------------------------------------------------------------------
# Running a notebook on a kernel

def skipped(cell) -> str|None:
    "Why nbdev_test would not run this cell (None: it runs); the same rules as `nbdev.test.test_nb`."
    if cell.cell_type != 'code': return 'not code'
    d = extract_directives(cell, remove=False)   # nbdev's own parser: {'slow': [], 'eval:': ['false']}
    if d.get('eval:', [''])[0].lower() == 'false': return 'eval: false'
    if TST_FLAGS & set(d): return f'test flag {sorted(TST_FLAGS & set(d))}'
    if 'nbdev_export' + '(' in cell.source: return 'nbdev_export call'
    return None

def skip_exec(nb) -> bool:
    "Front matter `skip_exec: true` (nbdev_test skips the whole notebook)."
    for c in nb.cells[:2]:
        m = re.match(r'^---\s*\n(.*?)\n---\s*$', c.source.strip(), re.DOTALL) if c.cell_type == 'raw' else None
        if m and str((yaml.safe_load(m.group(1)) or {}).get('skip_exec', '')).lower() == 'true': return True
    return False

def first_line(source:str) -> str:
    return next((l.strip() for l in source.splitlines() if l.strip() and not re.match(r'^\s*#\s*\|', l)), '')

class NotebookFailed(AssertionError): pass

def run_notebook(path:Path, cwd:Path, runs:int=1, timeout:int=CELL_TIMEOUT, nb=None) -> tuple[list, float]:
    "Run the notebook `runs` times in one fresh kernel with working directory `cwd`; return the executed copies and seconds."
    nb = nb or nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', allow_errors=False, record_timing=False,
                            resources={'metadata': {'path': str(cwd)}})
    done, t0 = [], time.perf_counter()
    with client.setup_kernel():
        for run in range(runs):
            client.nb = run_nb = copy.deepcopy(nb)
            for i, cell in enumerate(run_nb.cells):
                if skipped(cell): continue
                tc = time.perf_counter()
                try: client.execute_cell(cell, i)
                except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
                    what = {CellTimeoutError: f'timed out after {timeout}s', DeadKernelError: 'killed the kernel'}.get(type(e), 'failed')
                    raise NotebookFailed(
                        f'{path.name}: cell {i} (`{first_line(cell.source)}`) {what} on a python3 kernel '
                        f'(run {run + 1}, cwd {cwd}, after {time.perf_counter() - tc:.1f}s):\n'
                        f'{strip_ansi(str(e))[-6000:]}') from None
            done.append(run_nb)
    return done, time.perf_counter() - t0

def _files(folder:Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob('*')
            if p.is_file() and '.ipynb_checkpoints' not in p.parts and p.suffix != '.ipynb'}

# outputs of two runs must agree once durations, addresses and progress bars are masked
_re_mask = [(re.compile(r'<progress[^>]*>.*?</progress>', re.S), '<progress/>'),
            (re.compile(r'\b\d+(?:\.\d+)?\s*(?:s|ms|µs|us|ns|sec|secs|seconds|min|it/s|s/it)\b'), '<T>'),
            (re.compile(r'\b\d+:\d\d(?::\d\d)?\b'), '<T>'),
            (re.compile(r'\b0x[0-9a-fA-F]{6,}\b'), '<ADDR>'),
            (re.compile(r'\d+(?:\.\d+)?%\s*\[\d+/\d+'), '<PCT>')]
_re_timing_src = re.compile(r'\btime_fn\b|\btime\.\w|perf_counter|%%?timeit|\bbench_\w|machine_info')

def cell_results(nb) -> dict[int, list[str]]:
    "Comparable text of each cell's outputs (cells that measure time are left out)."
    res = {}
    for i, c in enumerate(nb.cells):
        if c.cell_type != 'code' or skipped(c) or _re_timing_src.search(c.source): continue
        outs = []
        for o in c.get('outputs', []):
            if o.output_type == 'stream': outs.append(f'{o.name}: {o.text}')
            elif o.output_type in ('execute_result', 'display_data'):
                for mime in ('text/html', 'image/png', 'text/markdown', 'text/plain'):   # fastprogress's table is HTML
                    if mime in o.data:
                        v = o.data[mime]
                        outs.append(f'{mime}: ' + (hashlib.sha1(v.encode()).hexdigest() if mime == 'image/png' else v))
                        break
        text = '\n'.join(outs)
        for r, s in _re_mask: text = r.sub(s, text)
        res[i] = text
    return res

# ---------------------------------------------------------------------------------------------------------------
# Tests

NB_PATHS = notebooks()
_double_runs = {}   # the training notebook's two runs, shared with test_rerun_same_results

@pytest.fixture(scope='module', autouse=True)
def _data_settings(report):
    g = lambda k: os.environ.get(k, '(unset)')
    report(f'kernel runs: MLFOUND_DATA={g("MLFOUND_DATA")} MLFOUND_MNIST={g("MLFOUND_MNIST")} cell timeout {CELL_TIMEOUT}s; '
           f'machine: OMP_NUM_THREADS={g("OMP_NUM_THREADS")} NUMBA_CPU_NAME={g("NUMBA_CPU_NAME")} '
           f'ATEN_CPU_CAPABILITY={g("ATEN_CPU_CAPABILITY")} ONEDNN_MAX_CPU_ISA={g("ONEDNN_MAX_CPU_ISA")}')

@pytest.mark.parametrize('nb', NB_PATHS, ids=[p.name for p in NB_PATHS])
def test_notebook_runs_in_kernel(nb, report):
    "The notebook runs top to bottom on a fresh python3 kernel from nbs/, and writes no files into nbs/."
    if skip_exec(nbformat.read(str(nb), as_version=4)): pytest.skip(f'{nb.name}: skip_exec in front matter')
    before = _files(NBS)
    runs = 2 if nb == training_notebook() else 1    # the training notebook twice in one kernel: see below
    done, secs = run_notebook(nb, NBS, runs=runs)
    if runs == 2: _double_runs[nb] = done
    report(f'kernel run {nb.name}: {secs:.1f}s' + (' (2 runs in one kernel)' if runs == 2 else ''))
    new = sorted(_files(NBS) - before)
    assert not new, f'{nb.name} wrote files into nbs/ (use a temporary folder): {new}'

def test_data_found_from_other_cwd(tmp_path, report):
    "The data notebook, opened from an unrelated working directory, still finds its data and writes nothing there."
    nb = next((p for p in NB_PATHS if p.name == '00_datasets.ipynb'), None)
    if nb is None: pytest.skip('nbs/00_datasets.ipynb does not exist')
    _, secs = run_notebook(nb, tmp_path)
    report(f'kernel run 00_datasets.ipynb from another cwd: {secs:.1f}s')
    left = sorted(_files(tmp_path))
    assert not left, f'{nb.name} wrote into its working directory {tmp_path}: {left}'

def test_rerun_same_results(report):
    "Running the training notebook twice in the same kernel gives the same outputs (seeded, no hidden state)."
    nb = training_notebook()
    if nb is None: pytest.skip('no training notebook in nbs/ (06_learner, 05_training)')
    if nb in _double_runs: (first, second), secs = _double_runs[nb], None
    else:
        (first, second), secs = run_notebook(nb, NBS, runs=2)
        report(f'kernel run {nb.name} twice: {secs:.1f}s')
    r1, r2 = cell_results(first), cell_results(second)
    diff = [i for i in r1 if r1[i] != r2.get(i)]
    compared = sum(bool(v) for v in r1.values())
    report(f'rerun {nb.name}: {compared} cells with outputs compared, {len(diff)} differ')
    assert compared, f'{nb.name}: no outputs to compare'
    msg = '\n'.join(f'cell {i} (`{first_line(first.cells[i].source)}`):\n  run 1: {r1[i][:600]!r}\n  run 2: {r2.get(i, "")[:600]!r}'
                    for i in diff)
    assert not diff, f'{nb.name} gives different results when run twice in one kernel:\n{msg}'

def test_rerun_check_can_fail(tmp_path):
    "The comparison above notices an unseeded result and accepts a seeded one (so it can fail)."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('import torch\nfrom mlfound.core import set_seed'),
                                         nbformat.v4.new_code_cell('torch.randn(3)'),
                                         nbformat.v4.new_code_cell('set_seed(1); torch.randn(3)'),
                                         nbformat.v4.new_code_cell('import time; t0 = time.perf_counter(); time.perf_counter() - t0')])
    (first, second), _ = run_notebook(Path('rerun_check.ipynb'), tmp_path, runs=2, nb=nb)
    r1, r2 = cell_results(first), cell_results(second)
    assert r1[1] != r2[1], 'an unseeded torch.randn gave the same output twice: the comparison masks too much'
    assert r1[2] == r2[2] and r1[2], 'a seeded torch.randn differs between runs'
    assert 3 not in r1, 'a timing cell is compared'

SETUP = '''
import torch, torch.nn.functional as F
from mlfound.core import set_seed
from mlfound.datasets import get_mnist
from mlfound.training import Dataset, SGD, fit, get_dls, mlp
set_seed(42)
x_train, y_train, x_valid, y_valid = get_mnist()
dls = get_dls(Dataset(x_train, y_train), Dataset(x_valid, y_valid), bs=64)
model = mlp()
before = [p.detach().clone() for p in model.parameters()]
'''
# the course's training loop: the Learner (with its default callbacks: progress bars in a notebook) where it exists
LEARNER = '''
from mlfound.learner import Learner
learn = Learner(model, dls, F.cross_entropy, lr=0.1)
def train(n):
    learn.fit(n)
    return learn.metrics['valid_loss'], learn.metrics['valid_acc']
'''
FIT = '''
opt = SGD(model.parameters(), lr=0.1)
def train(n): return fit(n, model, F.cross_entropy, opt, dls.train, dls.valid, verbose=False)
'''
LONG = 'print("training started", flush=True)\ntrain(10_000)'
CHECK = '''
finite = all(torch.isfinite(p).all().item() for p in model.parameters())
changed = any((p != b).any().item() for p, b in zip(model.parameters(), before))
stale_grads = any(p.grad is not None and p.grad.abs().sum().item() > 0 for p in model.parameters())
print(finite, changed, torch.is_grad_enabled(), stale_grads)
'''

def _run(kc, code, timeout=300):
    "Execute `code`, return (reply content, stdout text)."
    out = []
    def hook(msg):
        if msg['msg_type'] == 'stream': out.append(msg['content']['text'])
        elif msg['msg_type'] == 'error': out.append('\n'.join(msg['content']['traceback']))
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    return reply['content'], strip_ansi(''.join(out))

def test_interrupt_training(report):
    "Interrupting a training cell (kernel interrupt, as the Stop button) leaves the kernel and the model usable."
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name='python3')
    km.start_kernel(cwd=str(NBS))
    kc = km.client(); kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        loop = 'Learner.fit' if (ROOT/'mlfound'/'learner.py').exists() else 'mlfound.training.fit'
        content, out = _run(kc, SETUP + (LEARNER if loop == 'Learner.fit' else FIT))
        assert content['status'] == 'ok', f'setup failed:\n{out}'
        msg_id = kc.execute(LONG)
        t_end = time.time() + 120
        while time.time() < t_end:                     # wait until the loop is running
            msg = kc.get_iopub_msg(timeout=120)
            if msg['parent_header'].get('msg_id') == msg_id and msg['msg_type'] == 'stream' \
               and 'training started' in msg['content']['text']: break
        time.sleep(1.0)
        t0 = time.perf_counter()
        km.interrupt_kernel()
        while True:
            reply = kc.get_shell_msg(timeout=60)
            if reply['parent_header'].get('msg_id') == msg_id: break
        t_int = time.perf_counter() - t0
        assert reply['content']['status'] == 'error' and reply['content']['ename'] == 'KeyboardInterrupt', \
            f'the interrupted cell ended with {reply["content"].get("status")} {reply["content"].get("ename")}'
        for attempt in range(10):   # right after an error ipykernel aborts what was queued behind the cell: that is
            content, out = _run(kc, '6 * 7', timeout=60)    # an answer too, so ask again (a busy machine widens the window)
            if content['status'] != 'aborted': break
            time.sleep(0.5)
        assert content['status'] == 'ok', f'the kernel does not answer after the interrupt ({content["status"]})'
        content, out = _run(kc, CHECK, timeout=60)
        assert content['status'] == 'ok', out
        finite, changed, grad_on, stale = out.split()[-4:]
        assert finite == 'True', 'parameters are not finite after the interrupt'
        assert changed == 'True', 'the interrupted cell did not train at all (the interrupt came too early?)'
        assert grad_on == 'True', 'gradients are disabled after the interrupt'
        assert stale == 'False', 'the interrupted step left gradients in the parameters: the next step would add to them'
        content, out = _run(kc, 'vl, va = train(1)\n'
                                'print(vl, va, all(torch.isfinite(p).all().item() for p in model.parameters()))')
        assert content['status'] == 'ok', f'training again after the interrupt failed:\n{out}'
        vl, va, fin = out.split()[-3:]
        assert fin == 'True' and float(vl) == float(vl) and float(va) > 0.5, f'after one more epoch: loss {vl}, accuracy {va}'
        report(f'interrupt ({loop}): KeyboardInterrupt {t_int:.2f}s after the interrupt; one more epoch then: valid loss {float(vl):.3f}, '
               f'accuracy {float(va):.3f}; no gradients left over from the interrupted step')
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
