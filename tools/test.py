#!/usr/bin/env python
"""Run mlfound's tests as CI does: `nbdev_test` on the notebooks, then `pytest tests`, then one closing line.

    python tools/test.py                    # everything
    python tools/test.py --only nbs         # just the notebooks (or: --only pytest)
    python tools/test.py --flags slow       # also run the cells flagged `#| slow` (the benchmarks)
    python tools/test.py -- -k datasets     # arguments after -- go to pytest

nbdev_test and pytest do the work. This script adds only what they cannot do:
- the thread split: nbdev_test runs two notebooks at a time on a 2-core machine, so each gets one thread
  (`OMP_NUM_THREADS`, `NUMBA_NUM_THREADS`), unless the caller set them. The course's models are small, and
  measured on 2 cores the notebooks took 60-65 s that way against 122 s one at a time with two threads each:
  at these sizes torch's threads mostly wait on each other;
- one closing line for CI, `N passed, N failed, N skipped`, adding up the notebooks and the pytest tests.
"""
import argparse, os, subprocess, sys, tempfile, time, xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_notebooks(flags:str='') -> tuple[int, int, int]:
    "Run `nbdev_test` on every notebook; return (passed, failed, skipped) counted in notebooks."
    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    n_nbs = len(nbglob(get_config().nbs_path))
    jobs = min(2, os.cpu_count() or 1)
    env = dict(os.environ)
    for k in ('OMP_NUM_THREADS', 'NUMBA_NUM_THREADS'): env.setdefault(k, str(max(1, (os.cpu_count() or 1) // jobs)))
    print(f'== notebooks: nbdev_test, {n_nbs} notebooks, {jobs} at a time, OMP_NUM_THREADS={env["OMP_NUM_THREADS"]}', flush=True)
    r = subprocess.run(['nbdev_test', '--n_workers', str(jobs), '--timing', '--flags', flags], cwd=ROOT, env=env,
                       stderr=subprocess.PIPE, text=True)
    sys.stderr.write(r.stderr)
    if r.returncode == 0: return n_nbs, 0, 0
    # nbdev_test lists the notebooks that failed, one per tab-indented line after its report's fence
    failed = [l.strip() for l in r.stderr.split('=' * 50)[-1].splitlines() if l.startswith('\t')]
    n_failed = max(len(failed), 1)   # a non-zero exit is a failure even if nothing was listed
    return n_nbs - n_failed, n_failed, 0

def test_pytest(extra:list[str]) -> tuple[int, int, int]:
    "Run `pytest tests`; return (passed, failed, skipped) from its JUnit report."
    print('== pytest tests/', flush=True)
    with tempfile.TemporaryDirectory() as d:
        xml = Path(d)/'junit.xml'
        r = subprocess.run([sys.executable, '-m', 'pytest', 'tests', '-q', '-rs', '-p', 'no:cacheprovider',
                            f'--junitxml={xml}', *extra], cwd=ROOT)
        if r.returncode == 5: return 0, 0, 0      # no tests collected
        if not xml.exists(): return 0, 1, 0       # pytest failed before running anything
        root = ET.parse(xml).getroot()
        n = lambda k: sum(int(s.get(k, 0)) for s in ([root] if root.tag == 'testsuite' else root))
        failed, skipped = n('failures') + n('errors'), n('skipped')
        return n('tests') - failed - skipped, max(failed, int(r.returncode != 0)), skipped

if __name__ == '__main__':
    argv = sys.argv[1:]
    extra = argv[argv.index('--') + 1:] if '--' in argv else []
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--only', choices=['nbs', 'pytest'], help='run just one part')
    p.add_argument('--flags', default='', help="nbdev_test's --flags: test flags to run, e.g. 'slow'")
    a = p.parse_args(argv[:argv.index('--')] if '--' in argv else argv)
    totals = []
    for part, run in (('nbs', lambda: test_notebooks(a.flags)), ('pytest', lambda: test_pytest(extra))):
        if a.only in (None, part):
            t0 = time.perf_counter()
            totals.append(run())
            print(f'   {part} took {time.perf_counter() - t0:.0f}s', flush=True)
    passed, failed, skipped = (sum(t[i] for t in totals) for i in range(3))
    print(f'{passed} passed, {failed} failed, {skipped} skipped')
    sys.exit(1 if failed else 0)
