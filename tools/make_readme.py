#!/usr/bin/env python
"""Generate README.md from nbs/index.ipynb without Quarto (nbdev_readme needs it).

    python tools/make_readme.py          # rewrite README.md
    python tools/make_readme.py --check  # exit 1 if README.md is not current
"""
import argparse, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTICE = '<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n'

def _directives(src):
    "The `#| key: value` lines at the top of a code cell, as a dict."
    d = {}
    for line in src.splitlines():
        m = re.match(r'#\|\s*([\w-]+)\s*:?\s*(.*)', line)
        if not m: break
        d[m[1]] = m[2].strip()
    return d

def _text(v): return ''.join(v) if isinstance(v, list) else v

def cell_md(cell):
    "Markdown for one notebook cell, or None if it is hidden."
    src = _text(cell['source'])
    if cell['cell_type'] == 'markdown': return src.strip()
    if cell['cell_type'] != 'code': return None
    d = _directives(src)
    if 'hide' in d or d.get('include') == 'false' or 'export' in d or 'default_exp' in d: return None
    code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
    parts = [f'```python\n{code}\n```'] if code and d.get('echo') != 'false' else []
    for out in cell.get('outputs', []):
        txt = _text(out.get('text') or out.get('data', {}).get('text/plain', ''))
        if txt.strip(): parts.append(f'```\n{txt.rstrip()}\n```')
    return '\n\n'.join(parts) or None

def make_readme(nb_path=ROOT/'nbs'/'index.ipynb'):
    "README text for the index notebook: front-matter cell as title and summary, then every visible cell."
    cells = json.loads(Path(nb_path).read_text())['cells']
    mds = [m for m in map(cell_md, cells) if m]
    mds = [re.sub(r'\]\((?!https?:)([\w.-]+\.ipynb)\)', r'](nbs/\1)', m) for m in mds]  # links work from the repo root
    return NOTICE + '\n' + '\n\n'.join(mds) + '\n'

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--check', action='store_true', help='fail if README.md is out of date')
    args = p.parse_args()
    new, readme = make_readme(), ROOT/'README.md'
    if args.check:
        if not readme.exists() or readme.read_text() != new:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `python tools/make_readme.py`')
        print('README.md is current')
    else:
        readme.write_text(new); print(f'wrote {readme}')
