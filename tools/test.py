#!/usr/bin/env python
"""Run mlfound's tests as CI does, and end with one line `N passed, N failed, N skipped`.

1. every notebook in nbs/ through nbdev_test, each in a fresh process;
2. the pytest suite in tests/: notebooks on a real Jupyter kernel, JupyterLab and the docs preview in
   headless Chromium, the data loader's failure cases, the `mlfound train` command.

    python tools/test.py                    # everything
    python tools/test.py --jobs 1           # notebooks one at a time (default: two at a time on 2+ cores)
    python tools/test.py --only nbs         # just the notebooks (or: --only pytest)
    python tools/test.py -- -k datasets     # arguments after -- go to pytest
"""
import argparse, os, subprocess, sys, tempfile, time, xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def notebooks():
    "The notebooks nbdev_test would run, in course order."
    return sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))

def run_notebook(nb, env=None):
    "Run one notebook with nbdev_test in its own process; return (name, ok, seconds, output)."
    t0 = time.perf_counter()
    r = subprocess.run(['nbdev_test', '--path', str(nb), '--n_workers', '0'], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    out = (r.stdout + r.stderr).strip()
    return nb.name, r.returncode == 0 and 'nbdev Tests Failed' not in out, time.perf_counter() - t0, out

def notebook_env(jobs):
    """Split the cores between parallel notebooks, unless the caller chose thread counts.
    The course's models are small: on 2 cores, two notebooks with one thread each took 65 s where one at a
    time with two threads took 122 s (torch's threads mostly wait on each other at these sizes)."""
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    for k in ('OMP_NUM_THREADS', 'NUMBA_NUM_THREADS'): env.setdefault(k, threads)
    return env

def test_notebooks(jobs):
    passed, failed, env = 0, 0, notebook_env(jobs)
    print(f'   threads per notebook: OMP_NUM_THREADS={env["OMP_NUM_THREADS"]}', flush=True)
    with ThreadPoolExecutor(jobs) as ex:
        for name, ok, secs, out in ex.map(lambda nb: run_notebook(nb, env), notebooks()):
            print(f'{"ok    " if ok else "FAILED"} {name} ({secs:.1f}s)', flush=True)
            if not ok: print('\n'.join('    ' + l for l in out.splitlines()[-60:]), flush=True)
            passed, failed = passed + ok, failed + (not ok)
    return passed, failed, 0

def test_pytest(extra):
    with tempfile.TemporaryDirectory() as d:
        xml = Path(d)/'junit.xml'
        r = subprocess.run([sys.executable, '-m', 'pytest', 'tests', '-q', '-rs', '-p', 'no:cacheprovider',
                            f'--junitxml={xml}', *extra], cwd=ROOT)
        if r.returncode == 5: return 0, 0, 0      # no tests collected
        if not xml.exists(): return 0, 1, 0       # pytest itself failed before running anything
        suites = ET.parse(xml).getroot()
        suites = [suites] if suites.tag == 'testsuite' else list(suites)
        n = lambda k: sum(int(s.get(k, 0)) for s in suites)
        failed, skipped = n('failures') + n('errors'), n('skipped')
        failed = max(failed, int(r.returncode != 0))   # a non-zero exit is a failure even if uncounted
        return n('tests') - n('failures') - n('errors') - skipped, failed, skipped

if __name__ == '__main__':
    argv = sys.argv[1:]
    extra = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1), help='notebooks run at the same time')
    p.add_argument('--only', choices=['nbs', 'pytest'], help='run just one part')
    a = p.parse_args(argv)
    t0, totals = time.perf_counter(), []
    if a.only != 'pytest':
        print(f'== notebooks (nbdev_test, {a.jobs} at a time)', flush=True)
        totals.append(test_notebooks(a.jobs)); print(f'   notebooks took {time.perf_counter()-t0:.0f}s', flush=True)
    if a.only != 'nbs':
        t1 = time.perf_counter()
        print('== pytest tests/', flush=True)
        totals.append(test_pytest(extra)); print(f'   pytest took {time.perf_counter()-t1:.0f}s', flush=True)
    passed, failed, skipped = (sum(t[i] for t in totals) for i in range(3))
    print(f'{passed} passed, {failed} failed, {skipped} skipped')
    sys.exit(1 if failed else 0)
