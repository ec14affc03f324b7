"""The documentation site as readers get it: built by real Quarto (`nbdev_docs`) into _docs/, read in headless Chromium.

Every page the notebooks make is opened from a local web server with the network cut off (MathJax, which pages load
from a CDN, is served from the local copy `../shared/tools/quarto-offline --mathjax` installs). Each page must load
without a console error or failed request, typeset all its maths, show a `show_doc` entry for every function and
class its notebook exports, and render its figures. Across the site every internal link and #anchor must resolve,
"source" links must point at real files and lines, the sidebar must follow the course order, the index must list
every notebook and benchmark, and `search.json` must cover every page. Pages, exports and benchmarks are discovered
from the notebooks and `mlfound/_modidx.py`, never listed here. Screenshots of three pages go to test_out/.

Every page is also read twice for its layout, once per width. At 1280 px: display maths ends before the contents
column, no output scrolls sideways (reformat it to ~90 characters, or justify it in `WIDE_OUTPUTS`), the previous/
next links follow the sidebar, "Open in Colab" opens the page's notebook on GitHub and "Download notebook" the site's
copy, no raw Markdown is left in the text, every image has alt text and twice the pixels it is shown with, no heading
takes the anchor of an API entry, and the navbar marks the page's own section. On a 390-px phone: the page is no wider
than the screen (wide maths and tables scroll in their own box), nor is the fixed header, and prose tables fit.
Inline code keeps its contrast in the dark theme, and every notebook starts with tools/setup_cell.py's cell.

Which site is tested: `_docs/` if it is newer than every notebook and docs setting; otherwise the fixture builds it
first (half a minute on 2 cores) when `quarto` is on the PATH, and skips (fails in CI) when it is not. `$MLFOUND_DOCS` names an
already-built site folder to test as it is.

    python tests/test_docs.py build    # build _docs/ as CI does, failing on any error or unexplained warning
"""
from __future__ import annotations
import ast, functools, hashlib, html.parser, json, os, re, shutil, subprocess, sys, time
from pathlib import Path
from urllib.parse import urljoin, urlsplit, unquote

import pytest, yaml
from fastcore.ansi import strip_ansi
from nbdev.config import get_config
from nbdev.process import NBProcessor

from conftest import NBS, ROOT, block_network, notebooks, serve_folder, skip_or_fail

QUARTO_VERSION = '1.7.34'
MATHJAX_CDN = 'https://cdn.jsdelivr.net/npm/mathjax@3/'       # what Quarto 1.7's html template loads
# (Quarto's template also loads an ES6 polyfill from cdnjs with MathJax; tools/docs_postrender.py removes it, and a
# page that still asks for it fails: MathJax's is the only host outside the site a page may reach)
PHONE, DESKTOP = 390, 1280    # the widths every page is read at: a phone's, and a laptop's
IMAGE_MIMES = ('image/png', 'image/jpeg', 'image/gif', 'image/svg+xml')

CFG = get_config(path=ROOT)   # settings.ini as nbdev reads it: where it puts the site, its URL, the repository
SITE_URL = CFG.doc_host.rstrip('/') + CFG.doc_baseurl.rstrip('/') + '/'
BLOB_URL = f"{CFG.git_url.rstrip('/')}/blob/{CFG.branch}/"

# ---------------------------------------------------------------------------------------------------------------
# Building the site

# files nbdev_docs may write (README/CONTRIBUTING from their notebooks, the yml files, the symbol index): all tracked
def _written_by_nbdev_docs(cfg) -> list[Path]:
    root, nbs = cfg.config_path, cfg.nbs_path
    return [root/'README.md', root/'CONTRIBUTING.md', nbs/'nbdev.yml', nbs/'_quarto.yml', nbs/'sidebar.yml', cfg.lib_path/'_modidx.py']

def _digest(paths) -> dict: return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths}

def allowed_warnings(quarto_yml:Path) -> list[tuple[str, str]]:
    "The `# allow-warning: <regex> -- <why>` lines of `_quarto.yml`: (regex, reason) for each kind explained there."
    return re.findall(r'^\s*#\s*allow-warning:\s*(.+?)\s+--\s+(\S.*)$', quarto_yml.read_text(encoding='utf-8'), re.M)

_WARN = re.compile(r'\bWARN(ING)?\b|Warning:', re.I)
_ERROR = re.compile(r'\bERROR\b|Traceback \(most recent call last\)|^\w*(Error|Exception)\b')

class BuildError(Exception): pass

def build_site(cfg=CFG, verbose:bool=True) -> dict:
    """Run `nbdev_docs` in the project of `cfg` (nbdev's config); raise `BuildError` on a non-zero exit, an error line, a warning `_quarto.yml`
    does not explain, a missing page or a tracked file rewritten. Return the figures CI prints."""
    quarto = shutil.which('quarto')
    if not quarto: raise BuildError('Quarto is not on the PATH: install it with `../shared/tools/quarto-offline` '
                                    'and put the folder it prints first on PATH (or see quarto.org)')
    version = subprocess.run([quarto, '--version'], capture_output=True, text=True).stdout.strip()
    root = cfg.config_path
    watched = _written_by_nbdev_docs(cfg)
    # nbdev re-processes only the notebooks newer than their copy in _proc/ (and `nbdev_readme` fills it too), so a
    # warning printed once would never be seen again: build from nothing, every time
    shutil.rmtree(root/'_proc', ignore_errors=True)
    before, t0 = _digest(watched), time.perf_counter()
    r = subprocess.run(['nbdev_docs'], cwd=root, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    out = strip_ansi(r.stdout + r.stderr)
    if verbose: print(out.rstrip())
    if r.returncode:
        raise BuildError(f'nbdev_docs failed (exit {r.returncode})' + (
            '; its output is above' if verbose else ':\n' + '\n'.join(out.rstrip().splitlines()[-40:])))
    lines = out.splitlines()
    errors = [l for l in lines if _ERROR.search(l)]
    if errors: raise BuildError('nbdev_docs printed errors:\n  ' + '\n  '.join(errors))
    allowed = allowed_warnings(cfg.nbs_path/'_quarto.yml')
    warns = [l.strip() for l in lines if _WARN.search(l)]
    unexplained = [w for w in warns if not any(re.search(rx, w) for rx, _ in allowed)]
    if unexplained:
        raise BuildError(f'nbdev_docs printed {len(unexplained)} warning(s) that no `# allow-warning:` line in '
                         '_quarto.yml explains; fix them (or explain the kind there):\n  ' + '\n  '.join(unexplained))
    changed = [str(Path(p).relative_to(root)) for p, h in _digest(watched).items() if h != before[p]]
    if changed: raise BuildError(f'nbdev_docs rewrote tracked files: {changed} (regenerate and commit them first)')
    docs = cfg.doc_path
    pages = sorted(p.name for p in docs.glob('*.html'))
    if 'index.html' not in pages: raise BuildError(f'nbdev_docs produced no {docs}/index.html')
    return dict(quarto=version, seconds=secs, pages=len(pages), warnings=len(warns))

def _stale(docs:Path) -> str|None:
    "Why `docs` cannot be tested as it is (missing, or older than a notebook or docs setting), or None."
    index = docs/'index.html'
    if not index.exists(): return f'{docs} has no index.html'
    built = min(p.stat().st_mtime for p in docs.glob('*.html'))
    sources = [ROOT/'settings.ini', *NBS.glob('*.ipynb'), *NBS.glob('*.yml'), *NBS.glob('*.css')]
    newer = [p.name for p in sources if p.stat().st_mtime > built]
    if newer: return f'{docs} is older than {", ".join(sorted(newer))}'
    pages, want = {p.name for p in docs.glob('*.html')}, {page_of(nb) for nb in notebooks()}
    if pages - {'404.html'} != want: return f'{docs} has pages {sorted(pages ^ want)} that the notebooks make or no longer make'
    return None

@pytest.fixture(scope='session')
def site(report) -> Path:
    "The built site folder (see the module docstring for how it is found or built)."
    if os.environ.get('MLFOUND_DOCS'): return Path(os.environ['MLFOUND_DOCS']).resolve()
    docs = CFG.doc_path
    why = _stale(docs)
    if why:
        if not shutil.which('quarto'):
            skip_or_fail(f'{why}; Quarto is not on the PATH to build it: run `../shared/tools/quarto-offline '
                         '--mathjax`, put the folder it prints first on PATH, then `nbdev_docs`')
        print(f'\n{why}: building it with nbdev_docs')
        try: info = build_site(verbose=False)
        except BuildError as e: pytest.fail(f'building the docs site failed: {e}')
        report(f'docs: built by the test with Quarto {info["quarto"]} in {info["seconds"]:.0f}s, {info["pages"]} pages')
    return docs

@pytest.fixture(scope='session')
def mathjax() -> Path:
    "The local MathJax 3 folder: `$MLFOUND_MATHJAX`, else `mathjax/` beside the quarto-offline `bin/` on the PATH."
    env = os.environ.get('MLFOUND_MATHJAX')
    q = shutil.which('quarto')
    for d in [Path(env)] if env else [Path(q).resolve().parent.parent/'mathjax'] if q else []:
        if (d/'es5'/'tex-chtml-full.js').exists(): return d
    skip_or_fail('no local MathJax 3 (pages load it from a CDN, which the tests may not reach): run '
                 '`../shared/tools/quarto-offline --mathjax`, or set MLFOUND_MATHJAX to a folder holding es5/')

@pytest.fixture(scope='session')
def server(site):
    with serve_folder(site) as url: yield url

# ---------------------------------------------------------------------------------------------------------------
# What the notebooks say the site must hold

@functools.cache
def _cells(nb:Path) -> list:
    "The notebook's cells as nbdev reads them, with their `#|` directives parsed by nbdev in `cell.directives_`."
    return NBProcessor(nb, rm_directives=False).nb.cells

def page_of(nb:Path) -> str:
    "The page nbdev makes of a notebook (`01_matmul.ipynb` -> `matmul.html`)."
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(nb.name)).name

def title_of(nb:Path) -> str|None:
    "The notebook's `# Title` (its first markdown cell's H1), which nbdev makes the page title."
    md = next((c.source for c in _cells(nb) if c.cell_type == 'markdown'), '')
    m = re.match(r'\s*#\s+(.+)', md)
    return m.group(1).strip() if m else None

def module_of(nb:Path) -> str|None:
    "The module the notebook exports to (its `#| default_exp`), or None."
    return next((c.directives_['default_exp'][0] for c in _cells(nb) if c.cell_type == 'code' and c.directives_.get('default_exp')), None)

def exported_defs(nb:Path) -> list[str]:
    "Public functions and classes of the notebook's `#| export`/`exports` cells, named as `show_doc` names them."
    from nbdev.showdoc import showdoc_nm
    names = []
    for c in _cells(nb):
        if c.cell_type != 'code' or not {'export', 'exports'} & set(c.directives_): continue
        names += [showdoc_nm(n) for n in c.parsed_() or [] if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and (not n.name.startswith('_') or n.name.startswith('__'))]
    return names

def modidx_syms() -> dict:
    "`mlfound/_modidx.py`'s symbol index: 'mlfound.learner.Learner' -> 'learner.html#learner'."
    src = (CFG.lib_path/'_modidx.py').read_text(encoding='utf-8')
    d = ast.literal_eval(re.search(r'^d\s*=\s*(\{.*\})\s*$', src, re.M | re.S).group(1))
    return {k: v[0] for mod in d['syms'].values() for k, v in mod.items()}

def expected_images(nb:Path) -> int:
    "Image outputs the page shows (not those of hidden or exported cells)."
    n = 0
    for c in _cells(nb):
        if c.cell_type != 'code': continue
        d = c.directives_   # nbdev's: {'hide': [], 'include:': ['false'], ...}
        if {'hide', 'export', 'exporti', 'exports'} & set(d) or ['false'] in (d.get('include:'), d.get('output:')): continue
        n += sum(any(m in o.get('data', {}) for m in IMAGE_MIMES) for o in c.get('outputs', []))
    return n

def bench_names() -> list[str]:
    "The keys of `BENCHES` in the benchmarks notebook (the one that defines it)."
    for nb in notebooks():
        for c in _cells(nb):
            if c.cell_type != 'code' or 'BENCHES' not in c.source: continue
            for n in (m for t in c.parsed_() or [] for m in ast.walk(t)):
                if isinstance(n, (ast.Assign, ast.AnnAssign)) and isinstance(n.value, ast.Dict) and any(
                        getattr(t, 'id', None) == 'BENCHES' for t in (n.targets if isinstance(n, ast.Assign) else [n.target])):
                    return [ast.literal_eval(k) for k in n.value.keys]
    return []

def sidebar_yml() -> list[tuple[str, list[tuple[str, str]]]]:
    "nbs/sidebar.yml as [(section, [(text, notebook href), ...]), ...]; top-level pages form a section ''."
    items = yaml.safe_load((NBS/'sidebar.yml').read_text())['website']['sidebar']['contents']
    out = []
    def entries(its):
        for it in its:
            if isinstance(it, str): yield (None, it)
            elif 'contents' in it: yield from entries(it['contents'])
            else: yield (it.get('text'), it['href'])
    for it in items:
        if isinstance(it, dict) and 'section' in it: out.append((it['section'], list(entries(it.get('contents', [])))))
        else: out.append(('', list(entries([it]))))
    return out

NBS_LIST = notebooks()
NB_IDS = [nb.name for nb in NBS_LIST]

# ---------------------------------------------------------------------------------------------------------------
# The site, read as files

class _Links(html.parser.HTMLParser):
    "Every id, and every href/src (and og:/twitter:image) of one HTML page."
    def __init__(self):
        super().__init__(); self.ids, self.urls = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        for k in ('href', 'src'):
            if a.get(k) is not None: self.urls.append((tag, a[k]))
        if tag == 'meta' and a.get('property', a.get('name', '')) in ('og:image', 'twitter:image') and a.get('content'):
            self.urls.append(('meta', a['content']))

_parsed: dict[Path, _Links] = {}
def parse(f:Path) -> _Links:
    "The ids and links of one page (parsed once per run)."
    if f not in _parsed:
        p = _Links(); p.feed(f.read_text(encoding='utf-8')); _parsed[f] = p
    return _parsed[f]

def local_target(site:Path, page:Path, url:str) -> tuple[Path, str]|None:
    "The file and fragment a link from `page` points at inside the site, or None if it leads elsewhere."
    if url.startswith(SITE_URL): rel = url[len(SITE_URL):]
    elif re.match(r'^[a-z][\w+.-]*:', url) or url.startswith('//'): return None
    else: rel = urljoin(page.relative_to(site).as_posix(), url)
    u = urlsplit(rel)
    path = unquote(u.path) or page.relative_to(site).as_posix()
    target = site/path
    if path.endswith('/') or target.is_dir(): target = target/'index.html'
    return target, unquote(u.fragment)

def test_every_notebook_has_a_page(site, report):
    pages = {}
    for nb in NBS_LIST: pages.setdefault(page_of(nb), []).append(nb.name)
    clash = {p: n for p, n in pages.items() if len(n) > 1}
    assert not clash, f'notebooks that nbdev turns into the same page: {clash}'
    missing = [f'{n[0]} -> {p}' for p, n in pages.items() if not (site/p).exists()]
    assert not missing, f'notebooks without a page in {site}: {missing}'
    extra = sorted(p.name for p in site.glob('*.html') if p.name not in pages and p.name != '404.html')
    report(f'docs: {len(list(site.glob("*.html")))} pages in {site}' + (f'; not from a notebook: {extra}' if extra else ''))
    assert not extra, f'pages that no notebook makes (left from an old build? run nbdev_docs): {extra}'

def test_links_resolve(site):
    "Every link inside the site reaches a file and #anchor that exist; source links name real files and lines."
    broken, anchors, sources = [], [], []
    pages = sorted(site.glob('*.html'))
    for f in pages:
        for tag, url in parse(f).urls:
            if not url or url == '#' or url.startswith(('data:', 'mailto:', 'javascript:')): continue
            if url.startswith(BLOB_URL):                        # "source" and "view source" links into the repository
                path, _, frag = url[len(BLOB_URL):].partition('#')
                target = ROOT/unquote(path)
                if not target.is_file(): sources.append(f'{f.name}: {url} (no file {path})')
                elif frag and not (re.fullmatch(r'L(\d+)', frag) and
                                   1 <= int(frag[1:]) <= len(target.read_text(encoding='utf-8').splitlines())):
                    sources.append(f'{f.name}: {url} (no line {frag!r} in {path})')
                continue
            t = local_target(site, f, url)
            if t is None: continue
            target, frag = t
            if not target.is_file(): broken.append(f'{f.name}: <{tag}> {url}')
            elif frag and target.suffix == '.html' and frag not in parse(target).ids: anchors.append(f'{f.name}: {url}')
    msg = [('links to missing files', broken), ('links to missing #anchors', anchors),
           ('source links to missing files or lines', sources)]
    assert not (broken or anchors or sources), '\n'.join(f'{k}:\n  ' + '\n  '.join(v) for k, v in msg if v)

def test_search_covers_every_page(site):
    entries = json.loads((site/'search.json').read_text(encoding='utf-8'))
    by_page = {}
    for e in entries: by_page.setdefault(e['href'].split('#')[0], []).append(e)
    missing = [f'{nb.name} -> {page_of(nb)}' for nb in NBS_LIST if page_of(nb) not in by_page]
    assert not missing, f'search.json has no entry for: {missing}'
    untitled = [nb.name for nb in NBS_LIST if title_of(nb) and not any(e['title'] == title_of(nb) for e in by_page[page_of(nb)])]
    assert not untitled, f'search.json does not find these pages by their title: {untitled}'
    syms = [(nb.name, n) for nb in NBS_LIST for n in exported_defs(nb)]
    unfound = [f'{nb}: {n}' for nb, n in syms
               if not any(n == e['title'] or n in e['text'] for e in by_page.get(page_of(NBS/nb), []))]
    assert not unfound, f'exported names search cannot find on their page: {unfound}'

def test_index_lists_every_notebook_and_benchmark(site):
    "The landing page (and the README made from it) links every notebook's page and shows every benchmark's command."
    import html as _html
    index = site/'index.html'
    linked = {t[0].name for _, u in parse(index).urls if (t := local_target(site, index, u))}
    pages = [(nb.name, page_of(nb)) for nb in NBS_LIST if nb.name != 'index.ipynb']
    benches = bench_names()
    assert benches, 'found no BENCHES dict in the notebooks'
    text = _html.unescape(re.sub(r'<[^>]+>', '', index.read_text(encoding='utf-8')))
    readme = (ROOT/'README.md').read_text(encoding='utf-8')
    fails = [f'index.html does not link to {p} ({nb})' for nb, p in pages if p not in linked]
    fails += [f'README.md does not link to {SITE_URL}{p} ({nb}): run nbdev_readme' for nb, p in pages if f'{SITE_URL}{p}' not in readme]
    for b in benches:
        cmd = re.compile(rf'mlfound[ .]bench {re.escape(b)}\b')
        if not cmd.search(text): fails.append(f'index.html does not show the benchmark {b!r} (`python -m mlfound.bench {b}`)')
        if not cmd.search(readme): fails.append(f'README.md does not show the benchmark {b!r}: run nbdev_readme')
    assert not fails, '\n'.join(fails)

# ---------------------------------------------------------------------------------------------------------------
# The site, read in a browser

def open_page(browser, server, mathjax, page_name, width:int=DESKTOP):
    "Open a page offline, `width` px wide; return (page, problems), problems listing console errors and failed or blocked requests."
    page, problems = browser.new_page(), []
    page.set_viewport_size({'width': width, 'height': 900})
    def stand_in(r) -> bool:
        "Answer MathJax from the local copy, as `block_network` lets us; True if answered."
        url = r.request.url
        if url.startswith(MATHJAX_CDN):
            f = mathjax/urlsplit(url).path[len(urlsplit(MATHJAX_CDN).path):]
            if f.is_file(): r.fulfill(path=str(f))
            else: problems.append(f'no local MathJax file for {url}'); r.abort()
            return True
        return False
    blocked = block_network(page, stand_in=stand_in)
    page.on('console', lambda m: m.type == 'error' and problems.append(f'console error: {m.text}'))
    page.on('pageerror', lambda e: problems.append(f'JavaScript error: {e}'))
    page.on('requestfailed', lambda q: problems.append(f'request failed: {q.url} ({q.failure})'))
    page.on('response', lambda r: r.status >= 400 and problems.append(f'HTTP {r.status}: {r.url}'))
    resp = page.goto(server + page_name)
    assert resp and resp.ok, f'{page_name} did not load'
    page.wait_for_load_state('load')
    page.evaluate('() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null')
    page.wait_for_load_state('networkidle')
    problems += [f'tried to reach the network: {url}' for url in blocked]
    return page, problems

_MATHS_JS = """() => {
  const main = document.querySelector('main');
  const maths = [...main.querySelectorAll('.math')];
  const raw = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80));
  const errs = [...main.querySelectorAll('mjx-merror')].map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80));
  const c = main.cloneNode(true);
  c.querySelectorAll('pre, code, mjx-container, script, style, .math').forEach(e => e.remove());
  return [maths.length, raw, errs, c.textContent];
}"""

_SHOWDOC_JS = """entries => entries.map(([name, anchor]) => {
  // the show_doc entry: a section headed `name` whose own code block is the signature `def|class <name>(`
  const last = name.split('.').pop().replace(/[.*+?^${}()|[\\]\\\\]/g, '\\\\$&');
  const sig = new RegExp('\\\\b(def|class)\\\\s+' + last + '\\\\s*\\\\(');
  const pre = s => s.querySelector(':scope > div.sourceCode pre');
  const headed = [...document.querySelectorAll('main section')].filter(s => {
    const h = s.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4, :scope > h5');
    return h && h.textContent.trim() === name; });
  const entry = headed.find(s => pre(s) && sig.test(pre(s).textContent));
  if (!entry) return [name, headed.length ? 'a heading but no signature under it' : 'no entry', null];
  if (/\\[`[^`]+`\\]\\(\\S+\\)/.test(pre(entry).textContent)) return [name, 'markdown link inside the signature', null];
  // where nbdev's links to `name` (#anchor, from _modidx.py) land: the entry, a section holding it, or a prose
  // section of that name; wrong when they open another export's entry (names that differ only in case collide)
  if (anchor === null) {   // names that differ only in case share nbdev's anchor: check the page's links instead
    const page = location.pathname.split('/').pop();
    const a = [...document.querySelectorAll('main a[href*="#"]')].find(a =>
      a.textContent.trim() === name && new URL(a.href).pathname.split('/').pop() === page);
    if (!a) return [name, null, null];
    anchor = decodeURIComponent(new URL(a.href).hash.slice(1));
  }
  const target = document.getElementById(anchor);
  if (!target) return [name, null, `no #${anchor}`];
  if (target === entry || target.contains(entry)) return [name, null, null];
  const other = target.closest('section');
  const sigOf = other && pre(other) && /\\b(def|class)\\s+[\\w.]+\\s*\\(/.test(pre(other).textContent);
  if (!sigOf) return [name, null, null];
  const th = other.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4, :scope > h5');
  return [name, null, `#${anchor} opens the entry of "${th ? th.textContent.trim() : other.id}"; this one is #${entry.id}`];
})"""

def _raw_tex(text:str) -> list[str]:
    "TeX left as text outside code: `\\(`, `\\[`, `$$`, or a backslash command (prose has none)."
    return re.findall(r'.{0,30}(?:\\[(\[)\]]|\$\$|\\[A-Za-z]{2,}).{0,30}', text)

def _screenshot_pages() -> list[str]:
    "Three pages to keep pictures of: the index, the first with figures, the first with the most maths among the rest."
    pics = [n for n in NBS_LIST if expected_images(n)]
    maths = sorted(NBS_LIST, key=lambda n: -len(re.findall(r'\$\$|\$[^$\s]', ''.join(c.source for c in _cells(n) if c.cell_type == 'markdown'))))
    chosen = [n for n in NBS_LIST if n.name == 'index.ipynb'][:1]
    for cand in (pics, maths):
        nb = next((n for n in cand if n not in chosen), None)
        if nb: chosen.append(nb)
    return [n.name for n in chosen]

SHOTS = _screenshot_pages()

# ---------------------------------------------------------------------------------------------------------------
# Layout, navigation and the "run it yourself" links, read on every page

_DESKTOP_JS = """() => {
  const main = document.querySelector('main');
  const text = el => el.textContent.replace(/\\s+/g, ' ').trim().slice(0, 70);
  const toc = document.querySelector('#quarto-margin-sidebar');
  const tocLeft = toc && toc.getBoundingClientRect().width > 0 ? toc.getBoundingClientRect().left : window.innerWidth;
  // display equations: their box (which scrolls if the equation is wider) must end before the contents column
  const eqs = [...main.querySelectorAll('mjx-container[display="true"]')].filter(e => e.getBoundingClientRect().right > tocLeft + 1)
    .map(e => `${text(e.closest('p, li, div') || e)} (right edge ${Math.round(e.getBoundingClientRect().right)} px, contents at ${Math.round(tocLeft)} px)`);
  const body = main.getBoundingClientRect().right > tocLeft + 1 ? [`the body column ends at ${Math.round(main.getBoundingClientRect().right)} px`] : [];
  // outputs that scroll sideways: their longest line
  const wide = [...main.querySelectorAll('.cell-output pre, .cell-output table')].filter(e => e.scrollWidth > e.clientWidth + 1)
    .map(e => [e.textContent.split('\\n').reduce((a, b) => b.length > a.length ? b : a, '').trim().slice(0, 70), e.scrollWidth, e.clientWidth]);
  const link = sel => { const a = document.querySelector(sel); return a ? new URL(a.href).pathname.split('/').pop() || 'index.html' : null; };
  const colab = document.querySelector('main a.colab-link'), dl = document.querySelector('main a.download-link');
  const noAlt = [...main.querySelectorAll('img')].filter(i => !(i.getAttribute('alt') || '').trim()).map(i => i.getAttribute('src'));
  // figures at 2x: the PNG has at least twice the pixels of the box it is shown in
  const lowRes = [...main.querySelectorAll('.cell-output-display img')].filter(i => i.clientWidth && i.naturalWidth < 1.9 * i.clientWidth)
    .map(i => `${i.getAttribute('src')} (${i.naturalWidth} px shown in ${i.clientWidth})`);
  const heads = [...main.querySelectorAll('h1, h2, h3, h4, h5')].map(h => h.textContent.trim());
  const navActive = [...document.querySelectorAll('#quarto-header a.nav-link.active')].map(a => a.textContent.trim());
  return {eqs, body, wide, prev: link('.nav-page-previous a'), next: link('.nav-page-next a'),
          colab: colab && colab.href, download: dl && [new URL(dl.href).pathname, dl.hasAttribute('download')],
          noAlt, lowRes, heads, navActive};
}"""

_PHONE_JS = """() => {
  const W = document.documentElement.clientWidth;
  const header = document.querySelector('#quarto-header');
  const clipped = el => { for (let a = el.parentElement; a && a !== document.body; a = a.parentElement)
    if (getComputedStyle(a).overflowX !== 'visible') return true; return false; };
  const wider = document.documentElement.scrollWidth > W + 1
    ? [...document.body.querySelectorAll('main *')].filter(e => { const r = e.getBoundingClientRect(); return r.width && r.right > W + 1 && !clipped(e); })
        .filter((e, _, all) => !all.includes(e.parentElement)).slice(0, 5)
        .map(e => `<${e.tagName.toLowerCase()}${e.className ? '.' + String(e.className).split(' ')[0] : ''}> ${e.textContent.replace(/\\s+/g, ' ').trim().slice(0, 50)} (${Math.round(e.getBoundingClientRect().right)} px)`)
    : [];
  // tables in the prose (not outputs) fit the phone: all their columns in view, none cut off behind a scroll
  const tables = [...document.querySelectorAll('main table')].filter(t => !t.closest('.cell-output, .doc-params') && t.scrollWidth > t.clientWidth + 1)
    .map(t => `${t.querySelector('tr').textContent.replace(/\\s+/g, ' ').trim().slice(0, 60)} (${t.scrollWidth} px in ${t.clientWidth})`);
  return {width: document.documentElement.scrollWidth, W, header: header ? Math.round(header.getBoundingClientRect().width) : null,
          wider, tables};
}"""

# Outputs allowed to scroll sideways at 1280 px: (page, start of the longest line) -> why it cannot be reformatted.
WIDE_OUTPUTS: dict[tuple[str, str], str] = {}

# raw Markdown left in the rendered text (outside code, maths and outputs): a link, emphasis, a code span
_RAW_MD = re.compile(r'\[[^\]\n]{0,80}\]\((?:https?://|\.{0,2}/|#)[^)\s]*\)|(?<![\w*])\*\*\S[^*\n]{0,80}\*\*(?![\w*])|`[^`\n]{1,60}`')

def _course_order() -> list[str]:
    "The pages in the sidebar's order (the order of the previous/next links)."
    return [page_of(Path(h)) for _, ents in sidebar_yml() for _, h in ents]

def colab_url(nb:str) -> str:
    "The Colab link of notebook `nb`, from settings.ini: Colab opens it from GitHub."
    return f'https://colab.research.google.com/github/{CFG.user}/{CFG.repo}/blob/{CFG.branch}/{CFG.nbs_path.name}/{nb}'

def layout_fails(nb:str, name:str, got:dict, text:str, exports:list[str]) -> list[str]:
    "What is wrong with a page read at 1280 px (`got` from `_DESKTOP_JS`, `text` its prose)."
    fails = []
    if got['eqs'] or got['body']: fails.append(f'display maths over the contents column: {got["body"] + got["eqs"][:5]}')
    wide = [f'{line!r} ({sw} px in {cw})' for line, sw, cw in got['wide'] if not any(p == name and line.startswith(l) for p, l in WIDE_OUTPUTS)]
    if wide: fails.append(f'{len(wide)} outputs scroll sideways at {DESKTOP} px (reformat them to ~90 characters): {wide[:6]}')
    order = _course_order()
    if name in order:
        i = order.index(name)
        want = (order[i - 1] if i else None, order[i + 1] if i + 1 < len(order) else None)
        if (got['prev'], got['next']) != want: fails.append(f'previous/next links {(got["prev"], got["next"])}, the sidebar order says {want}')
    if got['colab'] != colab_url(nb): fails.append(f'"Open in Colab" links to {got["colab"]}, not {colab_url(nb)}')
    if got['download'] != [f'/nbs/{nb}', True]: fails.append(f'the "Download notebook" link is {got["download"]}, not the site\'s nbs/{nb} with `download`')
    if raw := _RAW_MD.findall(text): fails.append(f'raw Markdown in the text: {raw[:5]}')
    if got['noAlt']: fails.append(f'images without alt text (add `#| fig-alt: "..."` to the cell): {got["noAlt"][:5]}')
    if got['lowRes']: fails.append(f'figures below 2x (the setup cell asks for retina; re-run the notebook): {got["lowRes"][:5]}')
    if clash := [n for n in exports if got['heads'].count(n) > 1]:
        fails.append(f'headings named like an API entry, which take its anchor (say more, e.g. "The {clash[0]} class"): {clash}')
    return fails

@pytest.mark.parametrize('nb', NB_IDS)
def test_page_on_a_phone(nb, site, server, mathjax, browser, test_out, report):
    f"A page read on a {PHONE}-px phone: never wider than the screen (wide maths, tables and outputs scroll in their box), the header as wide as the screen, prose tables whole."
    name = page_of(NBS/nb)
    page, problems = open_page(browser, server, mathjax, name, width=PHONE)
    try:
        got = page.evaluate(_PHONE_JS)
        if nb in SHOTS:
            shot = test_out/f'docs_{Path(name).stem}_phone.png'
            page.screenshot(path=str(shot), full_page=True)
            report(f'docs screenshot: {shot}')
    finally: page.close()
    fails = []
    if got['width'] > got['W'] + 1: fails.append(f'the page is {got["width"]} px wide on a {got["W"]}-px screen; sticking out: {got["wider"]}')
    if got['header'] and got['header'] > got['W'] + 1: fails.append(f'the fixed header is {got["header"]} px wide')
    if got['tables']: fails.append(f'tables cut off at the right (let them wrap): {got["tables"]}')
    if problems: fails.append('loading it: ' + '; '.join(dict.fromkeys(problems)))
    assert not fails, f'{nb} -> {name} at {PHONE} px:\n  ' + '\n  '.join(fails)

_CONTRAST_JS = """() => {
  // WCAG contrast of inline code against the page, in the light and the dark theme (a translucent background is
  // blended over the body's)
  const rgba = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => { const f = v => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const measure = () => {
    const code = document.querySelector('main p code:not(.sourceCode), main li code:not(.sourceCode)');
    if (!code) return null;
    const body = rgba(getComputedStyle(document.body).backgroundColor), bg = rgba(getComputedStyle(code).backgroundColor);
    const a = bg.length > 3 ? bg[3] : 1, mix = [0, 1, 2].map(i => a * bg[i] + (1 - a) * body[i]);
    const [l1, l2] = [lum(rgba(getComputedStyle(code).color)), lum(mix)].sort((x, y) => y - x);
    return Math.round((l1 + 0.05) / (l2 + 0.05) * 100) / 100;
  };
  const light = measure();
  if (!window.quartoToggleColorScheme) return {light, dark: null};
  window.quartoToggleColorScheme(); const dark = measure(); window.quartoToggleColorScheme();
  return {light, dark};
}"""

def test_inline_code_reads_in_both_themes(site, server, mathjax, browser):
    "Inline code keeps a WCAG AA contrast (4.5:1) against the page in the light and in the dark theme."
    page, problems = open_page(browser, server, mathjax, 'core.html')
    try: got = page.evaluate(_CONTRAST_JS)
    finally: page.close()
    assert got['light'] and got['dark'], f'no inline code or no dark theme on core.html: {got}'
    low = {k: v for k, v in got.items() if v < 4.5}
    assert not low, f'inline code contrast below 4.5:1 in {low} (theme.scss sets its background)'

def test_every_notebook_starts_with_the_setup_cell():
    "Every notebook's first cell is tools/setup_cell.py's (installs mlfound where it is missing, figures at 2x)."
    sys.path.insert(0, str(ROOT/'tools'))
    try: from setup_cell import has_setup
    finally: sys.path.remove(str(ROOT/'tools'))
    missing = [nb.name for nb in NBS_LIST if not has_setup(json.loads(nb.read_text(encoding='utf-8')))]
    assert not missing, f'notebooks that do not start with the setup cell (run `python tools/setup_cell.py`): {missing}'

@pytest.mark.parametrize('nb', NB_IDS)
def test_page(nb, site, server, mathjax, browser, test_out, report):
    "One notebook's page: loads cleanly offline, its title, typeset maths, a show_doc for each export, its figures."
    nb_path = NBS/nb
    name = page_of(nb_path)
    page, problems = open_page(browser, server, mathjax, name)
    try:
        title = page.inner_text('h1.title').strip() if page.query_selector('h1.title') else None
        n_math, untypeset, tex_errors, text = page.evaluate(_MATHS_JS)
        syms, mod = modidx_syms(), module_of(nb_path)
        names, wrong_page = exported_defs(nb_path), []
        entries = []
        for n in names:
            url = syms.get(f"{CFG.lib_name}.{mod}.{n}")
            if url and url.split('#')[0] != name: wrong_page.append(f'{n} -> {url}')
            twins = [m for m in names if m != n and m.lower() == n.lower()]   # `conv2d` and `Conv2d`: one nbdev anchor
            entries.append([n, None if twins else url.split('#')[1] if url else n.lower()])
        found = page.evaluate(_SHOWDOC_JS, entries)
        undocumented = [f'{n} ({why})' for n, why, _ in found if why]
        mislinked = [f'`{n}`: {where}' for n, _, where in found if where]
        unindexed = [n for n in names if f"{CFG.lib_name}.{mod}.{n}" not in syms]
        imgs = page.evaluate("() => [...document.querySelectorAll('main img')].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
        bad_imgs = [src for src, ok in imgs if not ok]
        n_img = expected_images(nb_path)
        active = page.eval_on_selector_all('#quarto-sidebar a.sidebar-link.active[href]', 'els => els.map(e => new URL(e.href).pathname.slice(1) || "index.html")')
        layout = page.evaluate(_DESKTOP_JS)
        if nb in SHOTS:
            shot = test_out/f'docs_{Path(name).stem}.png'
            page.screenshot(path=str(shot), full_page=True)
            report(f'docs screenshot: {shot}')
    finally: page.close()
    report(f'docs {nb} -> {name}: {len(names)} show_doc entries, {n_math} equations, {len(imgs)}/{n_img} figures')
    fails = []
    if title != title_of(nb_path): fails.append(f'title {title!r}, the notebook says {title_of(nb_path)!r}')
    if problems: fails.append('loading it: ' + '; '.join(dict.fromkeys(problems)))
    if untypeset: fails.append(f'{len(untypeset)} equations not typeset: {untypeset[:5]}')
    if tex_errors: fails.append(f'TeX errors: {tex_errors[:5]}')
    if raw := _raw_tex(text): fails.append(f'raw TeX in the text (math not recognised, e.g. a space after `$`): {raw[:5]}')
    if unindexed: fails.append(f'exports missing from {CFG.lib_path.relative_to(ROOT)}/_modidx.py (run nbdev_export): {unindexed}')
    if wrong_page: fails.append(f'exports indexed on another page: {wrong_page}')
    if undocumented: fails.append(f'exported functions/classes without their show_doc entry: {undocumented}')
    if mislinked: fails.append(f'links to these exports land on another entry (their anchors collide): {mislinked}')
    if bad_imgs: fails.append(f'images that did not render: {bad_imgs}')
    if len(imgs) < n_img: fails.append(f'{len(imgs)} images on the page, the notebook has {n_img} figure outputs')
    if active != [name]: fails.append(f'the sidebar marks {active} as the current page, not {name}')
    section = next((sec for sec, ents in sidebar_yml() for _, h in ents if page_of(Path(h)) == name), None)
    nav_for = {'The course': ['Course'], 'Library basics': ['Library']}.get(section, [])
    if layout['navActive'] != nav_for: fails.append(f'the navbar marks {layout["navActive"]} as the current section, not {nav_for}')
    fails += layout_fails(nb, name, layout, text, names)
    assert not fails, f'{nb} -> {name}:\n  ' + '\n  '.join(fails)

_SIDEBAR_JS = """() => [...document.querySelectorAll('#quarto-sidebar ul.sidebar-section.depth1')].map(ul => [
  ul.closest('li.sidebar-item-section').querySelector('.sidebar-item-container .menu-text').textContent.trim(),
  [...ul.querySelectorAll('a.sidebar-link[href]')].map(a => [a.textContent.trim(), new URL(a.href).pathname.slice(1) || 'index.html'])])"""

def test_sidebar_follows_course_order(site, server, mathjax, browser):
    """The rendered sidebar is nbs/sidebar.yml: each notebook once, in notebook order within each section, each
    label its page's title, and a lesson numbered "N." is notebook N."""
    page, problems = open_page(browser, server, mathjax, 'index.html')
    try: got = page.evaluate(_SIDEBAR_JS)
    finally: page.close()
    want = sidebar_yml()
    fails = []
    listed = [h for _, ents in want for _, h in ents]
    by_name = {nb.name: nb for nb in NBS_LIST}
    if unknown := [h for h in listed if Path(h).name not in by_name]: fails.append(f'sidebar.yml lists notebooks that do not exist: {unknown}')
    if unlisted := [n for n in by_name if n not in [Path(h).name for h in listed]]: fails.append(f'notebooks missing from sidebar.yml: {unlisted}')
    if twice := sorted({h for h in listed if listed.count(h) > 1}): fails.append(f'listed twice: {twice}')
    for sec, ents in want:
        names = [Path(h).name for _, h in ents]
        if names != sorted(names): fails.append(f'section {sec!r} is not in notebook order: {names}')
        for text, h in ents:
            m = re.match(r'(\d+)\.\s', text or '')
            if m and not re.match(rf'0*{m.group(1)}(?!\d)', Path(h).name): fails.append(f'{text!r} is {h}, not notebook {m.group(1)}')
            if Path(h).name in by_name and text != title_of(by_name[Path(h).name]):
                fails.append(f'the sidebar calls {h} {text!r}; its page title is {title_of(by_name[Path(h).name])!r}')
    expect = [[sec, [[text, page_of(Path(h))] for text, h in ents if Path(h).name in by_name]] for sec, ents in want if sec]
    shown = [[s, [[t, h] for t, h in links]] for s, links in got]
    if [[s, [h for _, h in l]] for s, l in shown] != [[s, [h for _, h in l]] for s, l in expect]:
        fails.append(f'the rendered sidebar {shown} differs from sidebar.yml {expect}')
    if problems: fails.append('loading index.html: ' + '; '.join(problems))
    assert not fails, '\n'.join(fails)

if __name__ == '__main__':
    if sys.argv[1:] != ['build']: sys.exit(__doc__.strip().splitlines()[-1])
    try: info = build_site()
    except BuildError as e: sys.exit(f'docs build failed: {e}')
    print(f'docs: Quarto {info["quarto"]}, built in {info["seconds"]:.0f}s, {info["pages"]} pages, '
          f'{info["warnings"]} warnings (each kind explained in _quarto.yml)')
    if info['quarto'] != QUARTO_VERSION: print(f'note: CI pins Quarto {QUARTO_VERSION}; this build used {info["quarto"]}')
