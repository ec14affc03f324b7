"""A training notebook run the way a user runs it: JupyterLab in a browser, Run > Run All Cells.

JupyterLab is started on 127.0.0.1 (free port, token, `--no-browser`) with temporary runtime, config, settings
and workspace folders, serving a COPY of nbs/ (tracked notebooks are never touched; autosave is off too), and is
driven by headless Chromium (Playwright, system binary, no network). The notebook is `$MLFOUND_LAB_NB`, else
06_learner.ipynb, else 05_training.ipynb. After Run All, every code cell must have an execution count, no cell
may show an error, and the progress bar and the plots the notebook draws must be rendered. A screenshot goes to
test_out/. The server is shut down (its whole process group) whatever happens.
"""
from __future__ import annotations
import json, os, re, shutil, signal, socket, subprocess, sys, time, urllib.request, uuid
from pathlib import Path

import pytest

from conftest import NBS, block_network, training_notebook

RUN_TIMEOUT = int(os.environ.get('MLFOUND_LAB_TIMEOUT', 1200))   # seconds for Run All to finish

def lab_notebook() -> Path|None:
    env = os.environ.get('MLFOUND_LAB_NB')
    return NBS/env if env else training_notebook()

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _settings(folder:Path):
    "User settings: no autosave, all cells in the DOM, no network for news or updates."
    overrides = {
        '@jupyterlab/docmanager-extension/plugin': {'autosave': False},
        '@jupyterlab/notebook-extension/tracker': {'windowingMode': 'none'},
        '@jupyterlab/apputils-extension/notification': {'fetchNews': 'false', 'checkForUpdates': False},
    }
    for name, value in overrides.items():
        f = folder/f'{name}.jupyterlab-settings'
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))

def _api(base, token, path):
    with urllib.request.urlopen(f'{base}{path}?token={token}', timeout=10) as r: return json.loads(r.read())

@pytest.fixture
def lab(tmp_path):
    "A running JupyterLab serving a copy of nbs/; yields (base url, token, root folder, log file)."
    root = tmp_path/'nbs'
    shutil.copytree(NBS, root, ignore=shutil.ignore_patterns('.ipynb_checkpoints', '_proc'))
    env = dict(os.environ)
    for var, sub in [('JUPYTER_RUNTIME_DIR', 'runtime'), ('JUPYTER_CONFIG_DIR', 'config'), ('JUPYTER_DATA_DIR', 'data'),
                     ('JUPYTERLAB_SETTINGS_DIR', 'settings'), ('JUPYTERLAB_WORKSPACES_DIR', 'workspaces'),
                     ('IPYTHONDIR', 'ipython')]:
        env[var] = str(tmp_path/sub); (tmp_path/sub).mkdir()
    _settings(tmp_path/'settings')
    port, token = _free_port(), uuid.uuid4().hex
    log = tmp_path/'jupyterlab.log'
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}',
           '--ServerApp.open_browser=False', '--LabApp.extension_manager=readonly']
    if hasattr(os, 'geteuid') and os.geteuid() == 0: cmd.append('--allow-root')   # CI containers run as root
    with open(log, 'w') as logf:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        t_end = time.time() + 120
        while True:
            if proc.poll() is not None: pytest.fail(f'jupyter lab exited with {proc.returncode}:\n{log.read_text()[-4000:]}')
            try: _api(base, token, '/api/status'); break
            except OSError:
                if time.time() > t_end: pytest.fail(f'jupyter lab did not answer within 120s:\n{log.read_text()[-4000:]}')
                time.sleep(0.5)
        yield base, token, root, log
    finally:
        try: os.killpg(proc.pid, signal.SIGTERM)       # the server and the kernels it started
        except ProcessLookupError: pass
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=10)

def _kernel_states(base, token) -> list[str]:
    return [s['kernel']['execution_state'] for s in _api(base, token, '/api/sessions') if s.get('kernel')]

def test_run_all_in_jupyterlab(lab, browser, test_out, report):
    nb = lab_notebook()
    if nb is None or not nb.exists(): pytest.skip(f'training notebook not found ({nb or "06_learner / 05_training"})')
    base, token, root, log = lab
    code = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
    runnable = [i for i, src in enumerate(code) if src.strip()]     # JupyterLab does not execute empty cells
    source = '\n'.join(code)
    want_progress = bool(re.search(r'progress_bar|master_bar|ProgressCB|fastprogress', source))
    want_plot = bool(re.search(r'plt\.|\.plot\(|plot_\w+\(|show_digits\(|show_image', source))
    page = browser.new_page()
    t0 = time.perf_counter()
    try:
        blocked = block_network(page)
        page.goto(f'{base}/lab/tree/{nb.name}?token={token}', wait_until='domcontentloaded', timeout=120_000)
        page.wait_for_selector('.jp-NotebookPanel .jp-Cell', timeout=120_000)
        # a notebook without kernel metadata makes JupyterLab ask for a kernel: accept the default (python3) as a user would
        asked = False
        t_end = time.time() + 120
        while time.time() < t_end:
            if page.locator('.jp-Dialog').count():
                dialog = page.locator('.jp-Dialog').first
                report(f'jupyterlab: opening {nb.name} asked: {dialog.inner_text()[:120]!r} -> accepted the default')
                dialog.locator('.jp-mod-accept').first.click(); asked = True
            states = _kernel_states(base, token)
            if states and all(s == 'idle' for s in states): break
            time.sleep(0.5)
        else: pytest.fail(f'the kernel did not become idle: {_kernel_states(base, token)}')
        t_open = time.perf_counter() - t0
        # fastprogress replaces its bars by a summary when a loop ends, so watch for them while the cells run
        page.evaluate('''() => { window.__progress = 0;
            new MutationObserver(() => { const n = document.querySelectorAll('.jp-OutputArea-output progress').length;
                                         if (n > window.__progress) window.__progress = n; })
              .observe(document.body, {subtree: true, childList: true}); }''')
        progress_shot = None
        page.locator('.lm-MenuBar-itemLabel', has_text=re.compile(r'^Run$')).first.click()
        page.locator('.lm-Menu-itemLabel', has_text=re.compile(r'^Run All Cells$')).first.click()
        t_run = time.perf_counter()
        counts = '''() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')]
                     .map(c => (c.querySelector('.jp-InputPrompt') || {}).textContent || '')'''
        t_end = time.time() + RUN_TIMEOUT
        while True:
            prompts = page.evaluate(counts)
            pending = [i for i in runnable if i >= len(prompts) or not re.search(r'\[\d+\]', prompts[i])]
            errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
            errors = [e for e in errors if 'Traceback' in e or re.search(r'^\w*(Error|Exception|Interrupt)\b', e, re.M)]
            if errors: break                          # Run All stops at the first error
            if not pending and all(s == 'idle' for s in _kernel_states(base, token)): break
            if time.time() > t_end: pytest.fail(f'Run All did not finish in {RUN_TIMEOUT}s; cells without a count: {pending}')
            if progress_shot is None and page.evaluate('window.__progress'):
                try:        # a screenshot of a bar while it runs (it may vanish under our feet: then no picture)
                    page.locator('.jp-OutputArea-output progress').first.scroll_into_view_if_needed(timeout=2000)
                    progress_shot = test_out/f'jupyterlab_{nb.stem}_running.png'
                    page.screenshot(path=str(progress_shot))
                except Exception: progress_shot = False
            time.sleep(0.5)
        secs = time.perf_counter() - t_run
        n_progress = page.evaluate('window.__progress')
        imgs = page.evaluate('''() => [...document.querySelectorAll('.jp-OutputArea-output img')]
                                .map(i => [i.complete, i.naturalWidth, i.naturalHeight])''')
        good = [i for i in imgs if i[0] and i[1] > 0 and i[2] > 0]
        # the picture: the cell that trained with the progress bar (its summary table and loss plot), else the last plot
        fit_cell = page.locator('.jp-CodeCell', has=page.locator('.jp-OutputArea-output img')).filter(
            has_text=re.compile(r'Total time|epoch'))
        target = fit_cell.first if fit_cell.count() else (page.locator('.jp-OutputArea-output img').last if good
                                                          else page.locator('.jp-CodeCell').last)
        target.scroll_into_view_if_needed()
        shot = test_out/f'jupyterlab_{nb.stem}.png'
        page.screenshot(path=str(shot))
        report(f'jupyterlab {nb.name}: opened in {t_open:.1f}s, Run All Cells took {secs:.1f}s; {len(prompts)} code cells, '
               f'{n_progress} progress bars seen while running, {len(good)} images; kernel dialog: {asked}; '
               f'screenshots {shot}' + (f', {progress_shot}' if progress_shot else ''))
        assert not errors, f'{nb.name} shows an error in JupyterLab:\n' + '\n---\n'.join(e[-3000:] for e in errors)
        assert not pending, f'{nb.name}: cells without an execution count after Run All: {pending}'
        assert len(prompts) == len(code), f'{nb.name}: JupyterLab shows {len(prompts)} code cells, the file has {len(code)}'
        counts = [int(re.search(r'\[(\d+)\]', prompts[i]).group(1)) for i in runnable]
        assert counts == list(range(1, len(runnable) + 1)), f'{nb.name}: execution counts not 1..N in order: {counts}'
        if want_progress: assert n_progress, f'{nb.name} uses a progress bar but no <progress> was rendered while it ran'
        if want_plot: assert good, f'{nb.name} draws plots but no image was rendered ({len(imgs)} img elements)'
        assert not blocked, f'the browser tried to reach the network: {blocked[:10]}'
    finally:
        page.close()
