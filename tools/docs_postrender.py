#!/usr/bin/env python
"""Quarto post-render step of the docs site (nbs/_quarto.yml runs it after every render; stdlib only).

1. Copies every notebook of nbs/ into the site as nbs/<name>.ipynb: the pages' "Download notebook" links
   (tools/lesson_links.lua) point there, so a reader gets the notebook as it is in the repository, setup cell included.
2. Removes the ES6 polyfill `<script>` that Quarto 1.7's page template loads from cdnjs.cloudflare.com with MathJax:
   every browser MathJax 3 supports has ES6, and it was the only request to a host other than MathJax's (offline,
   the only console error). The template has no option for it.
3. Points links at the right API entry when two exports differ only in case (`conv2d` and `Conv2d`): nbdev
   anchors both at `#conv2d`, Quarto gives the second entry `#conv2d-1`, so a link to `Conv2d` would open
   `conv2d`. A link whose text is `<code>Name</code>` is sent to the entry headed exactly `Name` on its page.
Quarto runs it with the project folder (nbdev's _proc/) as the working directory and names the output folder in
$QUARTO_PROJECT_OUTPUT_DIR.
"""
import configparser, os, re, shutil
from pathlib import Path

POLYFILL = re.compile(r'[ \t]*<script src="https://cdnjs\.cloudflare\.com/polyfill/[^"]*"></script>\n?')
SECTION = re.compile(r'<section id="([^"]+)" class="level\d[^"]*">\s*<h\d[^>]*>([\w.]+)</h\d>')
CODE_LINK = re.compile(r'(<a href="[^"#]*?)([\w.-]+\.html)#([^"]+)("[^>]*><code>)([\w.]+)(</code></a>)')

def entries(html:str) -> dict:
    "A page's sections headed by a bare name (the show_doc entries): {id: name}."
    return {sid: name for sid, name in SECTION.findall(html)}

def fix_case_links(pages:dict) -> dict:
    "`pages` ({file name: html}) with the links to case-colliding entries sent to the entry of their exact name."
    heads = {f: entries(h) for f, h in pages.items()}
    def fix(m):
        pre, page, frag, mid, name, post = m.groups()
        ids = heads.get(page, {})
        if frag not in ids or ids[frag] == name or ids[frag].lower() != name.lower(): return m.group(0)
        exact = [i for i, n in ids.items() if n == name]
        return f'{pre}{page}#{exact[0]}{mid}{name}{post}' if exact else m.group(0)
    return {f: CODE_LINK.sub(fix, h) for f, h in pages.items()}

def project_root(start:Path) -> Path:
    "The folder holding settings.ini, at or above `start`."
    for d in [start, *start.parents]:
        if (d/'settings.ini').exists(): return d
    raise SystemExit(f'docs_postrender: no settings.ini at or above {start}')

if __name__ == '__main__':
    out = Path(os.environ.get('QUARTO_PROJECT_OUTPUT_DIR', '_docs')).resolve()
    root = project_root(Path.cwd().resolve())
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(root/'settings.ini', encoding='utf-8')
    nbs = root/cfg['DEFAULT'].get('nbs_path', 'nbs')
    if out.is_dir():
        dest = out/'nbs'
        dest.mkdir(exist_ok=True)
        for nb in sorted(nbs.glob('*.ipynb')):
            if not nb.name.startswith(('_', '.')): shutil.copyfile(nb, dest/nb.name)
        pages = {p: p.read_text(encoding='utf-8') for p in out.glob('*.html')}
        fixed = fix_case_links({p.name: POLYFILL.sub('', h) for p, h in pages.items()})
        for p, h in pages.items():
            if fixed[p.name] != h: p.write_text(fixed[p.name], encoding='utf-8')
