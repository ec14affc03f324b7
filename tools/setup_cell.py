#!/usr/bin/env python
"""Make the setup cell the first cell of every notebook in nbs/ (or of the notebooks named), inserting or updating it.

    python tools/setup_cell.py                        # every notebook in nbs/
    python tools/setup_cell.py nbs/01_matmul.ipynb    # just these
    python tools/setup_cell.py --check                # exit 1, naming them, if a notebook lacks it (changes nothing)

The cell lets a reader run any lesson wherever they open it, with one click: on Colab (which has PyTorch but not
mlfound), in a fresh Jupyter or JupyterLab, or under `nbdev_test`. It installs mlfound only when `import mlfound`
fails, and asks for figures at twice the pixel density at the same displayed size (`retina`), so they stay sharp on
high-density screens and on the docs site. `#| hide` keeps it off the docs site and out of the README; it exports
nothing. The cell is written exactly as `nbdev_clean` leaves it (no outputs, no execution count, a fixed id), so
running this tool twice, or `nbdev_clean` after it, changes nothing. tests/test_docs.py checks every notebook starts
with it.

The `%pip` line is indented inside `except`: IPython (and so Jupyter, Colab and execnb, which `nbdev_test` uses)
transforms magics at any indentation. The cell cannot be parsed as plain Python, so nbdev's docs build never runs it.
"""
from __future__ import annotations
import argparse, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'

SETUP_ID = 'mlfound-setup'
SETUP_SOURCE = """#| hide
# Setup: installs mlfound if it is missing (Colab has PyTorch, not mlfound); figures at 2x for sharp screens
try: import mlfound
except ModuleNotFoundError:
    %pip install -q mlfound
%config InlineBackend.figure_format = 'retina'"""

def setup_cell() -> dict:
    "The setup cell, as `nbdev_clean` writes a code cell."
    lines = SETUP_SOURCE.splitlines(keepends=True)
    return {'cell_type': 'code', 'execution_count': None, 'id': SETUP_ID, 'metadata': {}, 'outputs': [], 'source': lines}

def is_setup(cell:dict) -> bool:
    "Whether `cell` is a setup cell, current or out of date (its id, or a `#| hide` cell that installs mlfound)."
    src = ''.join(cell.get('source', []))
    return cell.get('id') == SETUP_ID or (cell.get('cell_type') == 'code' and src.startswith('#| hide')
                                          and 'pip install' in src and 'mlfound' in src)

def has_setup(nb:dict) -> bool:
    "Whether the notebook's first cell is the current setup cell."
    cells = nb.get('cells', [])
    return bool(cells) and cells[0].get('cell_type') == 'code' and ''.join(cells[0].get('source', [])) == SETUP_SOURCE

def apply(nb:dict) -> bool:
    "Make the current setup cell the notebook's first cell, removing any other setup cell; True if `nb` changed."
    before = json.dumps(nb['cells'], sort_keys=True)
    nb['cells'] = [setup_cell()] + [c for c in nb['cells'] if not is_setup(c)]
    return json.dumps(nb['cells'], sort_keys=True) != before

def write(nb:dict, path:Path):
    "Write `nb` as nbdev_clean and execnb do (sorted keys, one-space indent, UTF-8, a final newline)."
    path.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')

def notebooks(names:list[str]) -> list[Path]:
    "The notebooks named, else every notebook in nbs/ (not `_`- or `.`-prefixed ones)."
    if names: return [Path(n).resolve() for n in names]
    return sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='*', help='notebooks to update (default: every notebook in nbs/)')
    p.add_argument('--check', action='store_true', help='only check; exit 1 naming the notebooks without it')
    a = p.parse_args()
    missing, changed = [], []
    for f in notebooks(a.notebooks):
        nb = json.loads(f.read_text(encoding='utf-8'))
        if a.check:
            if not has_setup(nb): missing.append(f.name)
        elif apply(nb): write(nb, f); changed.append(f.name)
    if a.check:
        if missing: sys.exit(f'notebooks whose first cell is not the setup cell (run tools/setup_cell.py): {missing}')
        print('every notebook starts with the setup cell')
    else: print(f'setup cell inserted or updated in {len(changed)} notebook(s): {changed}' if changed else 'every notebook already had the setup cell')
