#!/usr/bin/env python
"""Run mlfound's tests as CI does: the notebooks natively, then pytest as a second machine, then one closing line.

    python tools/test.py                                  # everything, as CI runs it (two machine profiles)
    python tools/test.py --only nbs                       # just the notebooks, natively (or: --only pytest)
    python tools/test.py --only nbs --profile avx2 --threads 1   # the notebooks as an AVX2 laptop on one thread
    python tools/test.py --profiles                       # list the machine profiles and what each sets
    python tools/test.py --flags slow                     # also run the cells flagged `#| slow` (the benchmarks)
    python tools/test.py -- -k datasets                   # arguments after -- go to pytest
    python tools/test.py --only pytest -- tests/test_properties.py   # (test files named there replace tests/)

Every check must hold on any reader's machine, so CI runs the notebooks on two:
1. `nbdev_test`, natively: this machine's full instruction set (AVX-512 here), two notebooks at a time with one
   thread each (measured on 2 cores: 60-65 s that way against 122 s one at a time with two threads each);
2. `pytest tests`, under the `avx2` profile with 3 threads: numba, PyTorch, MKL and oneDNN held to AVX2 as on
   most laptops, another vector width and BLAS code path, and another thread count. Its kernel tests run every
   notebook again on a real Jupyter kernel, so this is the notebooks' second machine; the rest of the suite
   (properties, data, CLI, docs) runs there too.
`--profile`/`--threads` override the defaults of whichever parts run. A profile only sets environment variables,
read once when a process starts; a setting already in your environment wins over the profile's.
"""
import argparse, os, subprocess, sys, tempfile, time, xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The machine profiles (what numba and PyTorch target, as environment variables) live in the library, in one place:
# mlfound.core.MACHINE_PROFILES, explained in nbs/00_core.ipynb; `mlfound bench --isa` uses the same ones.
from mlfound.core import MACHINE_PROFILES as PROFILES, THREAD_VARS, profile_env

DEFAULTS = {'nbs': ('native', None), 'pytest': ('avx2', 3)}   # part -> (profile, threads); None: split the cores

def describe(env:dict) -> str:
    keys = [k for p in PROFILES.values() for k in p] + list(THREAD_VARS) + ['OMP_WAIT_POLICY']
    return ' '.join(f'{k}={env[k]}' for k in dict.fromkeys(keys) if k in env and k != 'NUMBA_CPU_FEATURES') or 'host defaults'

def test_notebooks(profile:str, threads:int|None, flags:str='') -> tuple[int, int, int]:
    "Run `nbdev_test` on every notebook; return (passed, failed, skipped) counted in notebooks."
    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    n_nbs = len(nbglob(get_config().nbs_path))
    jobs = min(2, os.cpu_count() or 1)
    env = profile_env(profile, threads if threads is not None else max(1, (os.cpu_count() or 1) // jobs))
    print(f'== notebooks: nbdev_test, {n_nbs} notebooks, {jobs} at a time, profile {profile}: {describe(env)}', flush=True)
    r = subprocess.run(['nbdev_test', '--n_workers', str(jobs), '--timing', '--flags', flags], cwd=ROOT, env=env,
                       stderr=subprocess.PIPE, text=True)
    sys.stderr.write(r.stderr)
    if r.returncode == 0: return n_nbs, 0, 0
    # nbdev_test lists the notebooks that failed, one per tab-indented line after its report's fence
    failed = [l.strip() for l in r.stderr.split('=' * 50)[-1].splitlines() if l.startswith('\t')]
    n_failed = max(len(failed), 1)   # a non-zero exit is a failure even if nothing was listed
    return n_nbs - n_failed, n_failed, 0

def test_pytest(profile:str, threads:int|None, extra:list[str]) -> tuple[int, int, int]:
    "Run `pytest tests`; return (passed, failed, skipped) from its JUnit report."
    env = profile_env(profile, threads)
    named = any((ROOT/x.split('::')[0]).exists() for x in extra if not x.startswith('-'))
    where = [] if named else ['tests']              # test files named after `--` replace the whole folder
    print(f'== pytest {" ".join(where) or "(the tests named)"}, profile {profile}: {describe(env)}', flush=True)
    with tempfile.TemporaryDirectory() as d:
        xml = Path(d)/'junit.xml'
        r = subprocess.run([sys.executable, '-m', 'pytest', *where, '-q', '-rs', '-p', 'no:cacheprovider',
                            f'--junitxml={xml}', *extra], cwd=ROOT, env=env)
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
    p.add_argument('--profile', choices=list(PROFILES), help="machine profile for every part run (default: nbs native, pytest avx2)")
    p.add_argument('--threads', type=int, help='threads per process for every part run (default: nbs split the cores, pytest 3)')
    p.add_argument('--flags', default='', help="nbdev_test's --flags: test flags to run, e.g. 'slow'")
    p.add_argument('--profiles', action='store_true', help='list the machine profiles and exit')
    a = p.parse_args(argv[:argv.index('--')] if '--' in argv else argv)
    if a.profiles:
        for name, env in PROFILES.items(): print(f'{name}: ' + (' '.join(f'{k}={v}' for k, v in env.items()) or 'the host as it is'))
        sys.exit(0)
    if a.threads is not None and a.threads < 1: p.error(f'--threads must be at least 1, got {a.threads}')
    settings = {part: (a.profile or prof, a.threads if a.threads is not None else thr) for part, (prof, thr) in DEFAULTS.items()}
    parts = {'nbs': lambda: test_notebooks(*settings['nbs'], a.flags), 'pytest': lambda: test_pytest(*settings['pytest'], extra)}
    totals = []
    for part, run in parts.items():
        if a.only in (None, part):
            t0 = time.perf_counter()
            totals.append(run())
            print(f'   {part} took {time.perf_counter() - t0:.0f}s', flush=True)
    passed, failed, skipped = (sum(t[i] for t in totals) for i in range(3))
    print(f'{passed} passed, {failed} failed, {skipped} skipped')
    sys.exit(1 if failed else 0)
