#!/usr/bin/env python
"""Shrink the PNG figures saved in the notebooks: each becomes a 256-colour palette PNG.

The figures are saved at 2x (the setup cell asks for `retina`), which doubles their pixels in each direction, and
the notebooks grow with them (07_init from 320 KB to 690 KB). A matplotlib plot uses a few dozen colours, a heat
map at most its colour map's 256, so a palette image shows the same picture at a third of the bytes. Run it after
re-executing a notebook, before `nbdev_clean`:

    python tools/shrink_pngs.py                 # every notebook in nbs/
    python tools/shrink_pngs.py nbs/07_init.ipynb

A figure already stored as a palette image is left as it is, so a second run changes nothing; a figure whose
palette version would not be smaller is kept too.
"""
from __future__ import annotations
import base64, io, json, sys
from pathlib import Path
from PIL import Image

NBS = Path(__file__).resolve().parent.parent/'nbs'

def shrink(png:bytes) -> bytes:
    "`png` as a 256-colour palette PNG if that is smaller; unchanged if it is already a palette image or not smaller."
    im = Image.open(io.BytesIO(png))
    if im.mode == 'P': return png
    rgba = im.convert('RGBA')
    has_alpha = rgba.getextrema()[3][0] < 255
    q = rgba.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE) if has_alpha else \
        rgba.convert('RGB').quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    q.save(buf, 'PNG', optimize=True, dpi=im.info.get('dpi', (72, 72)))
    return buf.getvalue() if len(buf.getvalue()) < len(png) else png

def shrink_notebook(path:Path) -> tuple[int, int]:
    "Shrink every PNG output of the notebook at `path` in place; return its size before and after, in bytes."
    text = path.read_text(encoding='utf-8')
    nb = json.loads(text)
    for cell in nb['cells']:
        for out in cell.get('outputs', []):
            data = out.get('data', {})
            if 'image/png' not in data: continue
            src = data['image/png']
            png = base64.b64decode(''.join(src) if isinstance(src, list) else src)
            new = shrink(png)
            if new != png: data['image/png'] = base64.b64encode(new).decode('ascii')
    new_text = json.dumps(nb, indent=1, ensure_ascii=False) + '\n'
    if new_text != text: path.write_text(new_text, encoding='utf-8')
    return len(text.encode()), len(new_text.encode())

if __name__ == '__main__':
    paths = [Path(p) for p in sys.argv[1:]] or sorted(NBS.glob('*.ipynb'))
    for p in paths:
        before, after = shrink_notebook(p)
        if before != after: print(f'{p.name}: {before/1e3:,.0f} KB -> {after/1e3:,.0f} KB')
