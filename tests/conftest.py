"""Shared pytest fixtures: paths, the test output folder, an offline headless Chromium (Playwright), a local web
server for built sites.

Fixtures are created only when a test asks for them, so tests that use none pay nothing. In CI (`$CI` set, as
GitHub and `../shared/tools/ci-fresh-clone` do) a missing tool fails the test that needs it instead of skipping it.
"""
from __future__ import annotations
import contextlib, functools, http.server, os, shutil, threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

try:                    # property-based tests (tests/test_properties*.py): a short fixed profile in CI, a long one on request
    from hypothesis import HealthCheck, settings as _hyp
    _hyp.register_profile('ci', max_examples=25, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
    _hyp.register_profile('dev', max_examples=300, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
    _hyp.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))   # HYPOTHESIS_PROFILE=dev for the long run
except ImportError: pass

ROOT = Path(__file__).resolve().parents[1]
NBS = Path(os.environ.get('MLFOUND_NBS') or ROOT/'nbs').resolve()   # MLFOUND_NBS: try the tests on a copy of nbs/
TEST_OUT = ROOT/'test_out'     # screenshots and other artefacts (git-ignored; CI uploads it)

# Chromium must never reach the network: no background services, no updates, a fresh profile.
CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                 '--disable-background-networking', '--disable-component-update', '--no-first-run',
                 '--disable-default-apps', '--disable-sync', '--disable-extensions', '--metrics-recording-only',
                 '--no-default-browser-check', '--disable-domain-reliability', '--disable-breakpad']

IN_CI = os.environ.get('CI', '').lower() not in ('', '0', 'false', 'no')

def skip_or_fail(msg:str):
    "Skip the test with `msg`, or fail it when running in CI, where every test must really run."
    if IN_CI: pytest.fail(f'{msg} (CI must run this test, not skip it)')
    pytest.skip(msg)

def chromium_path() -> str|None:
    "The Chromium to drive: `$MLFOUND_CHROMIUM`, else `chromium` / `chromium-browser` on the PATH."
    env = os.environ.get('MLFOUND_CHROMIUM')
    if env and Path(env).exists(): return env
    return shutil.which('chromium') or shutil.which('chromium-browser')

def notebooks() -> list[Path]:
    "Every notebook in nbs/, sorted (discovered, never listed by hand)."
    return sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))

def training_notebook() -> Path|None:
    "The notebook the training checks use: `$MLFOUND_TRAIN_NB`, else 06_learner, else 05_training (None if none exists)."
    env = os.environ.get('MLFOUND_TRAIN_NB')
    if env: return NBS/env
    return next((NBS/n for n in ('06_learner.ipynb', '05_training.ipynb') if (NBS/n).exists()), None)

_REPORT: list[str] = []

@pytest.fixture(scope='session')
def report():
    "`report(line)` adds a line to the 'mlfound test report' printed at the end of the run (timings, paths)."
    return _REPORT.append

def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section('mlfound test report')
        for line in _REPORT: terminalreporter.write_line(line)

@pytest.fixture(scope='session')
def test_out() -> Path:
    "The folder for screenshots (`test_out/` at the repository root)."
    TEST_OUT.mkdir(exist_ok=True)
    return TEST_OUT

@pytest.fixture(scope='session')
def browser(tmp_path_factory):
    "A headless Chromium (Playwright, system binary) with a fresh profile; skips the test if there is none (fails in CI)."
    exe = chromium_path()
    if not exe: skip_or_fail('Chromium not found (install it, e.g. `apt-get install chromium`, or set MLFOUND_CHROMIUM)')
    try: from playwright.sync_api import sync_playwright
    except ImportError: skip_or_fail('the playwright Python package is not installed (pip install playwright)')
    profile = tmp_path_factory.mktemp('chromium-profile')
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=exe, headless=True, args=CHROMIUM_ARGS,
                                                    viewport={'width': 1280, 'height': 900}, offline=False)
        ctx.set_default_timeout(30_000)
        try: yield ctx
        finally: ctx.close()

def block_network(page, allow_hosts:tuple[str, ...]=('127.0.0.1', 'localhost'),
                  stand_in:Callable|None=None) -> list[str]:
    """Abort every request that is not a local file, data URL or to `allow_hosts`; return the list of blocked URLs.
    `stand_in(route)` may answer a remote request first (say, from a local copy of a CDN file): True if it did."""
    blocked = []
    def route(r):
        url = r.request.url
        u = urlsplit(url)
        if u.scheme in ('file', 'data', 'blob', 'about') or u.hostname in allow_hosts: return r.continue_()
        if stand_in and stand_in(r): return
        blocked.append(url); return r.abort()
    page.route('**/*', route)
    return blocked

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

@contextlib.contextmanager
def serve_folder(folder:Path):
    "Serve `folder` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the base URL, ending in `/`."
    handler = functools.partial(_QuietHandler, directory=str(folder))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try: yield f'http://127.0.0.1:{srv.server_address[1]}/'
    finally: srv.shutdown(); srv.server_close(); t.join(5)


# ---------------------------------------------------------------------------------------------------------------
# Float comparisons for the property-based tests (torch imported only when they are used)

def unit(dtype) -> float:
    "The unit roundoff of `dtype`: 2**-24 for float32, 2**-53 for float64."
    import torch
    return torch.finfo(dtype).eps / 2

def close(a, b, tol, what=''):
    "Assert every element of `a` is within `tol` of `b` (absolute), naming the largest gap."
    import torch
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    assert a.shape == b.shape, f'{what}: shapes {tuple(a.shape)} and {tuple(b.shape)}'
    gap = (a - b).abs().max().item() if a.numel() else 0.
    assert gap <= tol, f'{what}: largest difference {gap:.3g} > tolerance {tol:.3g}'
