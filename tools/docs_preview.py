#!/usr/bin/env python
"""Build a static HTML preview of the documentation site, without Quarto and without a network.

    python tools/docs_preview.py [--out DIR] [--workers N] [--keep-proc]

What it does, in order:

1. copies `settings.ini` and `nbs/` into a temporary folder (tracked notebooks are never rewritten, and the
   repository's own `_proc/` cache is left alone);
2. runs nbdev's own docs pre-processing there (`nbdev.serve.proc_nbs`, the step `nbdev_preview` and
   `nbdev_docs` run before handing the notebooks to Quarto): front matter from the `# Title` / `> summary`
   cell, `show_doc` cells added and executed for every `#| export`ed function and class, exported and hidden
   cells removed, doc links added;
3. turns each processed notebook into one HTML page with a small converter of its own (plain `jupyter
   nbconvert` would show the YAML front matter and the `#|` lines): title and summary from the front matter,
   `echo: false`, `output: false|asis`, `include: false`, `warning: false` and `code-fold` honoured, directive
   lines stripped, links to the published site and to `.ipynb` files made relative, a sidebar in the order of
   `nbs/sidebar.yml`, the navbar entries of `_quarto.yml`, and previous/next links;
4. writes `index.html` (the landing page, `index.ipynb` when it exists, followed by the contents in sidebar
   order) and `manifest.json` (one entry per page: notebook, file, title, summary, module, images, `show_doc`
   names) into `--out` (default `_preview/`, git-ignored).

Everything a page needs is in the output folder (images are inlined, CSS is local); nothing is fetched from the
network. Maths is shown as TeX source because MathJax is not available offline.
"""
from __future__ import annotations
import argparse, base64, configparser, html, json, os, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import yaml
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------------------
# Step 1-2: nbdev's pre-processing, in a copy

_SKIP_COPY = shutil.ignore_patterns('_proc', '_docs', '_site', '.quarto', '.ipynb_checkpoints', '__pycache__', '.*')

def settings(root:Path=ROOT) -> configparser.SectionProxy:
    "The `[DEFAULT]` section of `settings.ini`."
    cfg = configparser.ConfigParser(delimiters=['='], interpolation=None)
    cfg.read(root/'settings.ini', encoding='utf-8')
    return cfg['DEFAULT']

def process_notebooks(root:Path, work:Path, workers:int=0) -> Path:
    "Copy settings and notebooks of `root` into `work`, run `nbdev.serve.proc_nbs` there and return its `_proc`."
    nbs_path = settings(root).get('nbs_path', 'nbs')
    shutil.copy2(root/'settings.ini', work/'settings.ini')
    shutil.copytree(root/nbs_path, work/nbs_path, ignore=_SKIP_COPY)
    code = ('import sys; from nbdev.serve import proc_nbs; '
            'print(proc_nbs(n_workers=int(sys.argv[1]), force=True))')
    # a subprocess: nbdev finds `settings.ini` from the working directory, and the `show_doc` cells it executes
    # (imports and exported code of every notebook) stay out of this process
    r = subprocess.run([sys.executable, '-c', code, str(workers)], cwd=work, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f'nbdev.serve.proc_nbs failed (exit {r.returncode}) on a copy of {root/nbs_path}:\n'
                         f'{r.stdout[-4000:]}\n{r.stderr[-8000:]}')
    proc = work/'_proc'
    if not proc.is_dir(): raise SystemExit(f'nbdev.serve.proc_nbs wrote no {proc}:\n{r.stdout}\n{r.stderr}')
    return proc

# ---------------------------------------------------------------------------------------------------------------
# Step 3: one page per processed notebook

_re_fm = re.compile(r'^---\s*\n(.*?\S.*?)\n---\s*$', re.DOTALL)
_re_dir = re.compile(r'^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_re_ansi = re.compile(r'\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])')
_re_pandoc_attr = re.compile(r'(\]\([^)\s]*\))\{[^}\n]*\}')      # [text](url){target="_blank" ...}
_re_heading_attr = re.compile(r'^(#{1,6} .*?)\s*\{[#.][^}\n]*\}\s*$', re.MULTILINE)  # ## Title {#id .class}
_re_fence_div = re.compile(r'^:::+\s*(\{[^}]*\}|[\w-]+)?\s*$')
_re_heading = re.compile(r'<h([1-6])(?: id="[^"]*")?>(.*?)</h\1>', re.DOTALL)

_MIME_ORDER = ['text/html', 'image/svg+xml', 'image/png', 'image/jpeg', 'image/gif', 'text/markdown', 'text/latex',
               'text/plain']

def _src(x) -> str: return ''.join(x) if isinstance(x, list) else (x or '')

def split_directives(source:str) -> tuple[dict, str]:
    "The leading `#| key: value` lines of a code cell as a dict, and the source without them."
    lines, dirs = source.splitlines(), {}
    while lines:
        m = _re_dir.match(lines[0])
        if m: dirs[m.group(1).lower()] = m.group(2).strip().strip('"\'')
        elif lines[0].strip(): break
        lines.pop(0)
    return dirs, '\n'.join(lines).rstrip()

def _false(v) -> bool: return str(v).strip().lower() in ('false', 'no', '0')

def slug(text:str) -> str:
    "Heading id as Quarto (and nbdev's doc links) make it: lower case, spaces to dashes."
    text = re.sub(r'<[^>]+>', '', html.unescape(text)).strip().lower()
    text = re.sub(r'\s+', '-', text)
    return re.sub(r'[^\w.\-]', '', text)

def _fenced_divs(md:str) -> str:
    "Quarto's `::: {.callout-note}` ... `:::` blocks as HTML divs (their content stays markdown)."
    out, depth = [], 0
    for line in md.splitlines():
        m = _re_fence_div.match(line)
        if m and (m.group(1) or depth):
            if m.group(1):
                cls = ' '.join(c.lstrip('.') for c in re.findall(r'\.[\w-]+', m.group(1))) or m.group(1).strip('{}')
                out += ['', f'<div class="{html.escape(cls)}" markdown="1">', '']; depth += 1
            else: out += ['', '</div>', '']; depth -= 1
        else: out.append(line)
    return '\n'.join(out)

def md2html(md:str) -> str:
    "Markdown (Quarto flavoured, as nbdev writes it) to HTML."
    md = _re_pandoc_attr.sub(r'\1', md)
    md = _re_heading_attr.sub(r'\1', md)
    res = markdown2html_mistune(_fenced_divs(md))
    # ids as Quarto makes them, so nbdev's `page.html#name` links land on the `show_doc` heading
    def head(m):
        inner = re.sub(r'<a class="anchor-link".*?</a>', '', m.group(2))
        sid = slug(inner)
        return f'<h{m.group(1)} id="{sid}">{inner}<a class="anchor-link" href="#{sid}">&#182;</a></h{m.group(1)}>'
    return _re_heading.sub(head, res)

def code_html(source:str) -> str: return highlight(source, PythonLexer(), HtmlFormatter(cssclass='sourceCode'))

def _pre(text:str, cls:str) -> str:
    return f'<div class="cell-output {cls}"><pre><code>{html.escape(_re_ansi.sub("", text))}</code></pre></div>'

def output_html(out:dict, dirs:dict) -> tuple[str, int]:
    "One output as HTML, and the number of images in it."
    kind = out.get('output_type')
    if kind == 'stream':
        if out.get('name') == 'stderr' and _false(dirs.get('warning', 'true')): return '', 0
        return _pre(_src(out.get('text')), f'cell-output-{out.get("name", "stdout")}'), 0
    if kind == 'error':
        tb = '\n'.join(out.get('traceback') or [f'{out.get("ename")}: {out.get("evalue")}'])
        return _pre(tb, 'cell-output-error'), 0
    data = out.get('data', {})
    if dirs.get('output') == 'asis' and 'text/markdown' in data:      # show_doc's markdown goes into the page
        return f'<div class="cell-output cell-output-asis">{md2html(_src(data["text/markdown"]))}</div>', 0
    mime = next((m for m in _MIME_ORDER if m in data), None)
    if mime is None: return '', 0
    val = _src(data[mime])
    if mime in ('image/png', 'image/jpeg', 'image/gif'):
        meta = out.get('metadata', {}).get(mime, {})
        size = ''.join(f' {k}="{int(meta[k])}"' for k in ('width', 'height') if isinstance(meta.get(k), (int, float)))
        body = f'<img src="data:{mime};base64,{val.strip()}"{size} alt="figure">'
        return f'<div class="cell-output cell-output-display">{body}</div>', 1
    if mime == 'image/svg+xml': return f'<div class="cell-output cell-output-display">{val}</div>', 1
    if mime == 'text/html': return f'<div class="cell-output cell-output-display">{val}</div>', val.count('<img')
    if mime == 'text/markdown': return f'<div class="cell-output cell-output-display">{md2html(val)}</div>', 0
    return _pre(val, 'cell-output-display'), 0

def _attachments(cell:dict, md:str) -> str:
    for name, d in (cell.get('attachments') or {}).items():
        mime, b64 = next(iter(d.items()))
        md = md.replace(f'attachment:{name}', f'data:{mime};base64,{_src(b64).strip()}')
    return md

def cell_html(cell:dict) -> tuple[str, int]:
    "One cell as HTML (Quarto's classes, so `styles.css` applies), and the number of images in it."
    kind, source = cell.get('cell_type'), _src(cell.get('source'))
    if kind == 'markdown':
        return (f'<div class="cell-markdown">{md2html(_attachments(cell, source))}</div>', 0) if source.strip() else ('', 0)
    if kind == 'raw':
        fmt = (cell.get('metadata') or {}).get('format') or (cell.get('metadata') or {}).get('raw_mimetype') or ''
        if 'html' in fmt: return source, 0
        return (md2html(source), 0) if source.strip() and not fmt else ('', 0)
    if kind != 'code': return '', 0
    dirs, code = split_directives(source)
    if 'hide' in dirs or _false(dirs.get('include', 'true')): return '', 0
    parts, n_img = [], 0
    if code and not _false(dirs.get('echo', 'true')):
        src = code_html(code)
        if dirs.get('code-fold') in ('show', 'true', 'hide'):
            summary = html.escape(dirs.get('code-summary', 'Code'))
            src = f'<details class="code-fold"{" open" if dirs["code-fold"] == "show" else ""}><summary>{summary}</summary>{src}</details>'
        parts.append(src)
    if not _false(dirs.get('output', 'true')):
        for out in cell.get('outputs', []):
            h, n = output_html(out, dirs)
            parts.append(h); n_img += n
    body = ''.join(p for p in parts if p)
    return (f'<div class="cell">{body}</div>', n_img) if body else ('', 0)

def front_matter(nb:dict) -> dict:
    "The YAML front matter nbdev puts in the first raw cell (`{}` if none)."
    for cell in nb.get('cells', [])[:2]:
        if cell.get('cell_type') == 'raw':
            m = _re_fm.match(_src(cell.get('source')).strip())
            if m: return yaml.safe_load(m.group(1)) or {}
    return {}

_re_default_exp = re.compile(r'^\s*#\s*\|\s*default_exp\s+(\S+)', re.MULTILINE)

def default_exp(nb_path:Path) -> str|None:
    "The module a source notebook exports to (`#| default_exp`), if any."
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    for cell in nb.get('cells', []):
        if cell.get('cell_type') == 'code':
            m = _re_default_exp.search(_src(cell.get('source')))
            if m: return m.group(1)
    return None

def render_page(nb:dict) -> dict:
    "Content HTML, title, description, number of images and `show_doc`'d names of a processed notebook."
    fm = front_matter(nb)
    cells = nb.get('cells', [])
    if fm and cells and cells[0].get('cell_type') == 'raw': cells = cells[1:]
    body, n_img = [], 0
    for cell in cells:
        h, n = cell_html(cell)
        if h: body.append(h); n_img += n
    showdoc = [m.group(1) for c in cells if c.get('cell_type') == 'code'
               for m in re.finditer(r'^\s*show_doc\(\s*([\w.]+)', _src(c.get('source')), re.MULTILINE)]
    return dict(html='\n'.join(body), title=str(fm.get('title', '')), description=str(fm.get('description', '') or ''),
                output_file=fm.get('output-file'), images=n_img, show_doc=showdoc)

# ---------------------------------------------------------------------------------------------------------------
# Step 4: site structure, links and files

def sidebar_entries(nbs:Path) -> list[tuple[str, str, str]]:
    "(section, text, href) for every page `sidebar.yml` lists, in order."
    f = nbs/'sidebar.yml'
    if not f.exists(): return []
    side = (yaml.safe_load(f.read_text(encoding='utf-8')) or {}).get('website', {}).get('sidebar', {})
    side = side[0] if isinstance(side, list) else side
    res = []
    def walk(items, section):
        for it in items or []:
            if isinstance(it, str): res.append((section, '', it))
            elif isinstance(it, dict) and 'contents' in it: walk(it['contents'], str(it.get('section', section)))
            elif isinstance(it, dict) and 'href' in it: res.append((section, str(it.get('text', '')), it['href']))
    walk(side.get('contents'), '')
    return res

def navbar_entries(nbs:Path) -> list[tuple[str, str]]:
    "(text, href) of the navbar's left items in `_quarto.yml`."
    f = nbs/'_quarto.yml'
    if not f.exists(): return []
    nav = (yaml.safe_load(f.read_text(encoding='utf-8')) or {}).get('website', {}).get('navbar', {}) or {}
    return [(str(i['text']), i['href']) for i in nav.get('left', []) or [] if isinstance(i, dict) and 'text' in i and 'href' in i]

PAGE_CSS = """
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5; color: #212529; }
a { color: #2780e3; }
nav.topbar { background: #2780e3; color: white; padding: .5rem 1rem; display: flex; gap: 1.2rem; align-items: baseline; flex-wrap: wrap; }
nav.topbar a { color: white; text-decoration: none; } nav.topbar a.site { font-weight: bold; font-size: 1.2rem; }
nav.topbar .prevnext { margin-left: auto; display: flex; gap: 1rem; }
.layout { display: flex; align-items: flex-start; }
aside.sidebar { width: 15rem; flex: none; padding: 1rem; font-size: .9rem; position: sticky; top: 0; max-height: 100vh; overflow-y: auto; }
aside.sidebar .section { font-weight: 600; margin-top: .8rem; }
aside.sidebar ul { list-style: none; padding-left: .5rem; margin: .2rem 0; }
aside.sidebar a { text-decoration: none; } aside.sidebar a.active { font-weight: bold; color: #212529; }
main { flex: 1; min-width: 0; max-width: 58rem; padding: 1rem 2rem 4rem; }
h1.title { margin-bottom: .2rem; } p.description { font-style: italic; font-size: 1.2rem; opacity: .7; margin-top: 0; }
pre { overflow-x: auto; padding: .4rem .6rem; } .sourceCode pre { background: #f8f9fa; border-radius: 4px; }
.cell-output-stderr pre { background: #fff4f4; } .cell-output-error pre { background: #fdd; }
.cell-output-asis h3, .cell-output-asis h4 { margin-top: .3rem; }
.cell-output-asis { border: 1px solid #dee2e6; border-radius: 6px; padding: .3rem 1rem; margin: 1rem 0; }
.cell-output-asis > hr:first-child { display: none; }
table { border-collapse: collapse; } th, td { border-bottom: 1px solid #dee2e6; padding: .2rem .6rem; text-align: left; }
a.anchor-link { visibility: hidden; margin-left: .3rem; text-decoration: none; } h1:hover a.anchor-link, h2:hover a.anchor-link, h3:hover a.anchor-link { visibility: visible; }
.preview-note { font-size: .8rem; opacity: .6; margin-top: 3rem; }
.cell-output-asis > p:first-of-type > a[href*="/blob/"] { float: right; font-size: smaller; }
.cell-output-asis .highlight pre { background: #f8f9fa; border-radius: 4px; }
details.code-fold > summary { cursor: pointer; font-size: .9rem; opacity: .8; }
"""

def _page(title:str, site:str, content:str, sidebar:str, navbar:str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} – {html.escape(site)}</title>
<link rel="stylesheet" href="preview.css"><link rel="stylesheet" href="pygments.css"><link rel="stylesheet" href="styles.css">
</head><body>
{navbar}
<div class="layout">{sidebar}
<main id="content">
{content}
<p class="preview-note">Static preview built by tools/docs_preview.py from nbdev's processed notebooks; the published site is built by Quarto.</p>
</main></div>
</body></html>
"""

def _rewrite_links(text:str, site_prefixes:list[str], nb2html:dict) -> str:
    "Links to the published site and to notebooks become relative links between preview pages."
    for p in site_prefixes: text = re.sub(rf'href="{re.escape(p)}/?', 'href="', text)
    def nb_link(m):
        target = nb2html.get(Path(m.group(1)).name)
        return f'href="{target}{m.group(2) or ""}"' if target else m.group(0)
    return re.sub(r'href="(?!\w+:)([^"#]*?\.ipynb)(#[^"]*)?"', nb_link, text)

def build(out:Path|str='_preview', root:Path|str=ROOT, workers:int=0, keep_proc:bool=False, quiet:bool=False) -> dict:
    "Build the preview of `root`'s notebooks into `out`; return the manifest."
    root, out, t0 = Path(root).resolve(), Path(out), time.time()
    cfg = settings(root)
    nbs_src = root/cfg.get('nbs_path', 'nbs')
    if not any(nbs_src.glob('*.ipynb')): raise SystemExit(f'no notebooks in {nbs_src}')
    if out.exists() and (not out.is_dir() or any(out.iterdir()) and not (out/'manifest.json').exists()):
        raise SystemExit(f'{out} exists and is not an earlier preview: choose another --out')
    tmp = Path(tempfile.mkdtemp(prefix='mlfound_preview_'))
    try:
        proc = process_notebooks(root, tmp, workers)
        t_proc = time.time() - t0
        site = cfg.get('title', cfg.get('lib_name', 'docs'))
        prefixes = [cfg.get('doc_host', '').rstrip('/') + cfg.get('doc_baseurl', '').rstrip('/')]
        prefixes = [p for p in prefixes if p.startswith('http')]
        nb_files = sorted(p for p in proc.glob('*.ipynb'))
        pages = {}
        for f in nb_files:
            page = render_page(json.loads(f.read_text(encoding='utf-8')))
            page['output_file'] = page['output_file'] or f.with_suffix('.html').name
            page['title'] = page['title'] or f.stem
            page['notebook'] = f.name
            page['module'] = default_exp(nbs_src/f.name) if (nbs_src/f.name).exists() else None
            pages[f.name] = page
        nb2html = {k: v['output_file'] for k, v in pages.items()}
        # order: sidebar.yml first (with its section and text), then any notebook it does not list
        order, listed = [], set()
        for section, text, href in sidebar_entries(proc):
            name = Path(href).name
            if name in pages and name not in listed:
                pages[name].update(section=section, nav_text=text or pages[name]['title']); order.append(name); listed.add(name)
        missing = [s[2] for s in sidebar_entries(proc) if Path(s[2]).name not in pages]
        unlisted = [n for n in sorted(pages) if n not in listed]
        for n in unlisted:
            pages[n].update(section='Not in sidebar.yml', nav_text=pages[n]['title']); order.append(n)
        if 'index.ipynb' in pages and order[0] != 'index.ipynb': order.remove('index.ipynb'); order.insert(0, 'index.ipynb')

        def sidebar(active:str) -> str:
            res, cur = ['<aside class="sidebar"><nav>'], None
            for n in order:
                p = pages[n]
                if p['section'] != cur:
                    if cur is not None: res.append('</ul>')
                    cur = p['section']; res.append(f'<div class="section">{html.escape(cur)}</div><ul>')
                cls = ' class="active"' if n == active else ''
                res.append(f'<li><a href="{p["output_file"]}"{cls}>{html.escape(p["nav_text"])}</a></li>')
            return ''.join(res + ['</ul></nav></aside>'])

        navbar_items = ''.join(f'<a href="{nb2html.get(Path(h).name, h)}">{html.escape(t)}</a>'
                               for t, h in navbar_entries(proc) if Path(h).name in nb2html)
        def navbar(n:str|None) -> str:
            i = order.index(n) if n in order else -1
            prev = f'<a rel="prev" href="{pages[order[i-1]]["output_file"]}">← {html.escape(pages[order[i-1]]["nav_text"])}</a>' if i > 0 else ''
            nxt = (f'<a rel="next" href="{pages[order[i+1]]["output_file"]}">{html.escape(pages[order[i+1]]["nav_text"])} →</a>'
                   if 0 <= i < len(order)-1 else '')
            return (f'<nav class="topbar"><a class="site" href="index.html">{html.escape(site)}</a>{navbar_items}'
                    f'<span class="prevnext">{prev}{nxt}</span></nav>')

        def contents() -> str:
            res, cur = ['<section class="preview-contents"><h2 id="contents">Contents</h2>'], None
            for n in order:
                p = pages[n]
                if p['section'] != cur:
                    if cur is not None: res.append('</dl>')
                    cur = p['section']; res.append(f'<h3>{html.escape(cur)}</h3><dl>')
                res.append(f'<dt><a href="{p["output_file"]}">{html.escape(p["title"])}</a></dt>'
                           f'<dd>{html.escape(p["description"])}</dd>')
            return ''.join(res + ['</dl></section>'])

        if out.exists() and any(out.iterdir()): shutil.rmtree(out)   # an earlier preview (checked above)
        out.mkdir(parents=True, exist_ok=True)
        for n in order:
            p = pages[n]
            head = f'<header><h1 class="title">{html.escape(p["title"])}</h1>'
            if p['description']: head += f'<p class="description">{html.escape(p["description"])}</p>'
            content = head + '</header>\n' + p['html']
            if p['output_file'] == 'index.html': content += contents()
            doc = _page(p['title'], site, _rewrite_links(content, prefixes, nb2html), sidebar(n), navbar(n))
            (out/p['output_file']).write_text(doc, encoding='utf-8')
        if 'index.html' not in {p['output_file'] for p in pages.values()}:
            content = f'<header><h1 class="title">{html.escape(site)}</h1></header>' + contents()
            (out/'index.html').write_text(_page(site, site, content, sidebar(''), navbar(None)), encoding='utf-8')
        (out/'preview.css').write_text(PAGE_CSS, encoding='utf-8')
        (out/'pygments.css').write_text(HtmlFormatter().get_style_defs(['.sourceCode', '.highlight']), encoding='utf-8')
        if (proc/'styles.css').exists(): shutil.copy2(proc/'styles.css', out/'styles.css')
        else: (out/'styles.css').write_text('', encoding='utf-8')
        if keep_proc: shutil.copytree(proc, out/'_proc')
        manifest = dict(
            site=site, order=order, sidebar_missing=missing, not_in_sidebar=unlisted,
            seconds=dict(proc_nbs=round(t_proc, 1), total=round(time.time() - t0, 1)),
            pages=[{k: pages[n][k] for k in ('notebook', 'output_file', 'title', 'description', 'section', 'nav_text',
                                             'module', 'images', 'show_doc')} for n in order])
        (out/'manifest.json').write_text(json.dumps(manifest, indent=1), encoding='utf-8')
    finally: shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        print(f'Preview of {len(order)} notebooks in {out.resolve()}/index.html '
              f'(nbdev processing {manifest["seconds"]["proc_nbs"]}s, total {manifest["seconds"]["total"]}s)')
        for p in manifest['pages']:
            print(f'  {p["output_file"]:<22} {p["notebook"]:<24} {p["title"]!r}: {len(p["show_doc"])} show_doc, {p["images"]} images')
        if missing: print(f'  listed in sidebar.yml but not (yet) in {nbs_src.name}/: {", ".join(missing)}')
        if unlisted: print(f'  not listed in sidebar.yml: {", ".join(unlisted)}')
    return manifest

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=str(ROOT/'_preview'), help='output folder (default: _preview/); an earlier preview there is replaced, any other non-empty folder refused')
    ap.add_argument('--root', default=str(ROOT), help='project root holding settings.ini (default: this repository)')
    ap.add_argument('--workers', type=int, default=0, help='parallel workers for nbdev processing (0: in one process)')
    ap.add_argument('--keep-proc', action='store_true', help="also copy nbdev's processed notebooks to OUT/_proc")
    a = ap.parse_args(argv)
    build(a.out, a.root, a.workers, a.keep_proc)

if __name__ == '__main__': main()
