#!/usr/bin/env python
"""List, per notebook, what the docs site's browser tests would flag, from the notebooks alone (no build, no browser):
headings named exactly like an API entry, figure cells without `#| fig-alt:`, output lines over 92 characters, and
exported parameters without a docments comment. Run from the repository root: `python tools/docs_audit.py`.
"""
import sys, json, re, importlib
sys.path.insert(0, 'tests')
from test_docs import NBS_LIST, _cells, exported_defs, module_of, title_of, expected_images
from mlfound.core import DocTable
for nb in NBS_LIST:
    cells = _cells(nb)
    out = []
    names = exported_defs(nb)
    heads = [m.group(2).strip() for c in cells if c.cell_type == 'markdown' for m in re.finditer(r'^(#+)\s+(.+)$', c.source, re.M)]
    if clash := [h for h in heads if h in names or h.strip('`') in names]: out.append(f'headings named like an API entry: {clash}')
    noalt = []
    for i, c in enumerate(cells):
        if c.cell_type != 'code': continue
        d = c.directives_
        if {'hide', 'export', 'exporti', 'exports'} & set(d): continue
        if any(m in o.get('data', {}) for o in c.get('outputs', []) for m in ('image/png', 'image/svg+xml')) and 'fig-alt:' not in d:
            noalt.append(f'cell {i} ({c.source.splitlines()[0][:60]!r})')
        for o in c.get('outputs', []):
            t = ''.join(o.get('text', '')) if 'text' in o else ''.join(o.get('data', {}).get('text/plain', '')) if 'text/html' not in o.get('data', {}) else ''
            long = [l for l in t.splitlines() if len(l) > 92]
            if long: out.append(f'cell {i} ({c.source.splitlines()[0][:50]!r}): {len(long)} output line(s) over 92 chars, longest {max(map(len,long))}: {long[0][:70]!r}')
    if noalt: out.append(f'figures without `#| fig-alt:`: {noalt}')
    mod = module_of(nb)
    if mod:
        try: m = importlib.import_module(f'mlfound.{mod}')
        except Exception as e: out.append(f'import failed {e}'); m = None
        for n in names if m else []:
            obj = m
            try:
                for part in n.split('.'): obj = getattr(obj, part)
            except AttributeError: continue
            try: sig = DocTable(obj, name=n).signature(); tbl = DocTable(obj, name=n).table()
            except Exception as e: continue
            if re.search(r'[(,=:\s]_[A-Za-z]', sig) and not sig.split('(')[0].endswith(n.split('.')[-1]) is False: pass
            bad = re.findall(r'(?<![\w.])_[A-Za-z]\w*', sig.split('(', 1)[1]) if '(' in sig else []
            if bad or 'NoneType' in sig or '<' in sig: out.append(f'signature of {n}: {sig!r}')
            undoc = [r[0] for r in DocTable(obj).params() if r[0] != 'Returns' and not r[3] and r[0] not in ('*args', '**kwargs')]
            if undoc: out.append(f'{n}: parameters without a docments comment: {undoc}')
    print(f'### {nb.name} — title {title_of(nb)!r}')
    print('\n'.join('- ' + o for o in out) or '- nothing')
