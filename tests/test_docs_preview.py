"""The documentation site, previewed without Quarto: `python tools/docs_preview.py` opened in headless Chromium.

Each notebook's page must load with its title, show a `show_doc` signature for every function and class the
notebook exports, and show its figures; links between pages must resolve; nothing may come from the network;
building the preview must not touch the tracked notebooks. Screenshots go to test_out/.
"""
from __future__ import annotations
import ast, hashlib, json, re, shutil, subprocess, sys, time
from pathlib import Path

import pytest, yaml

from conftest import NBS, ROOT, block_network, notebooks

NB_NAMES = [p.name for p in notebooks()]
IMAGE_MIMES = ('image/png', 'image/jpeg', 'image/gif', 'image/svg+xml')

def _digest(paths) -> dict: return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}

@pytest.fixture(scope='module')
def preview(tmp_path_factory):
    "Build the preview once with the documented command, from a snapshot of the project; return (folder, manifest)."
    tmp = tmp_path_factory.mktemp('preview')
    snap, out = tmp/'project', tmp/'site'
    snap.mkdir()
    shutil.copy2(ROOT/'settings.ini', snap/'settings.ini')
    shutil.copytree(NBS, snap/'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints', '_proc'))
    before = _digest(sorted((snap/'nbs').rglob('*')))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, 'tools/docs_preview.py', '--root', str(snap), '--out', str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    secs = time.perf_counter() - t0
    assert r.returncode == 0, f'tools/docs_preview.py failed:\n{r.stdout}\n{r.stderr}'
    print(f'\n{r.stdout.strip()}\n(docs preview built in {secs:.1f}s)')
    assert _digest(sorted((snap/'nbs').rglob('*'))) == before, 'building the preview changed the notebooks it read'
    assert sorted(p.name for p in snap.iterdir()) == ['nbs', 'settings.ini'], \
        f'building the preview wrote into the project: {sorted(p.name for p in snap.iterdir())}'
    return out, json.loads((out/'manifest.json').read_text())

def _page_of(manifest, nb_name):
    return next((p for p in manifest['pages'] if p['notebook'] == nb_name), None)

def _cells(nb_path):
    return json.loads(Path(nb_path).read_text(encoding='utf-8')).get('cells', [])

def _directives(src):
    d = {}
    for line in src.splitlines():
        m = re.match(r'^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*?)\s*$', line)
        if m: d[m.group(1)] = m.group(2)
        elif line.strip(): break
    return d

def expected_images(nb_path) -> int:
    "Image outputs of the source notebook that the docs show (not in hidden cells or cells without output)."
    n = 0
    for c in _cells(nb_path):
        if c.get('cell_type') != 'code': continue
        d = _directives(''.join(c.get('source', '')))
        if {'hide', 'export', 'exporti'} & set(d) or d.get('include') == 'false' or d.get('output') == 'false': continue
        n += sum(any(m in o.get('data', {}) for m in IMAGE_MIMES) for o in c.get('outputs', []))
    return n

def exported_defs(nb_path) -> tuple[str|None, list[str], list[str]]:
    "Module, functions/classes from its `__all__` that this notebook exports, and the other exported names."
    m = next((re.search(r'^\s*#\s*\|\s*default_exp\s+(\S+)', ''.join(c.get('source', '')), re.M)
              for c in _cells(nb_path) if c.get('cell_type') == 'code'
              and re.search(r'^\s*#\s*\|\s*default_exp\s', ''.join(c.get('source', '')), re.M)), None)
    if not m: return None, [], []
    mod = m.group(1)
    py = ROOT/'mlfound'/(mod.replace('.', '/') + '.py')
    assert py.exists(), f'{nb_path.name} exports to {mod} but {py.relative_to(ROOT)} does not exist: run nbdev_export'
    src = py.read_text(encoding='utf-8')
    tree = ast.parse(src)
    names = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                  and any(getattr(t, 'id', None) == '__all__' for t in n.targets)), [])
    # which notebook each top-level definition came from: nbdev writes `# %% ../nbs/<notebook>.ipynb #id` above it
    marks = [(i + 1, mm.group(1)) for i, l in enumerate(src.splitlines()) if (mm := re.match(r'# %% \S*?([^/\s]+\.ipynb)', l))]
    def origin(lineno): return next((nb for ln, nb in reversed(marks) if ln < lineno), None)
    defs = {n.name: origin(n.lineno) for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    mine = [n for n in names if defs.get(n) == nb_path.name]
    others = [n for n in names if n not in defs]
    return mod, mine, others

def test_every_notebook_has_a_page(preview):
    out, manifest = preview
    missing = [n for n in NB_NAMES if not _page_of(manifest, n)]
    assert not missing, f'notebooks without a preview page: {missing}'
    assert (out/'index.html').exists()

def test_sidebar_order(preview, browser, test_out):
    "The index page loads and its sidebar lists the pages in `sidebar.yml`'s order, each link resolving."
    out, manifest = preview
    side = yaml.safe_load((NBS/'sidebar.yml').read_text())['website']['sidebar']['contents']
    def walk(items):
        for it in items:
            if isinstance(it, str): yield it
            elif 'contents' in it: yield from walk(it['contents'])
            else: yield it['href']
    listed = [Path(h).name for h in walk(side)]
    want = [_page_of(manifest, n)['output_file'] for n in listed if n in NB_NAMES]
    unlisted = [n for n in NB_NAMES if n not in listed]
    page = browser.new_page()
    try:
        blocked = block_network(page)
        errors = []; page.on('pageerror', lambda e: errors.append(str(e)))
        assert page.goto((out/'index.html').as_uri()).ok
        got = page.eval_on_selector_all('aside.sidebar a', 'els => els.map(e => e.getAttribute("href"))')
        assert got[:len(want)] == want, f'sidebar order {got} != sidebar.yml order {want}'
        for href in got: assert (out/href).exists(), f'sidebar link {href} has no page'
        contents = page.eval_on_selector_all('.preview-contents a', 'els => els.map(e => e.getAttribute("href"))')
        assert contents == got, 'the contents on the index page differ from the sidebar'
        shot = test_out/'docs_preview_index.png'
        page.screenshot(path=str(shot), full_page=True)
        print(f'\nscreenshot: {shot}')
        assert not blocked, f'the index page tried to reach the network: {blocked}'
        assert not errors, errors
    finally: page.close()
    if unlisted: pytest.fail(f'notebooks missing from nbs/sidebar.yml: {unlisted}')

@pytest.mark.parametrize('nb', NB_NAMES)
def test_page(nb, preview, browser, test_out):
    "A notebook's page loads, has its title, the `show_doc` of each exported function/class, and its figures."
    out, manifest = preview
    p = _page_of(manifest, nb)
    assert p, f'no page for {nb}'
    mod, names, others = exported_defs(NBS/nb)
    n_img = expected_images(NBS/nb)
    page = browser.new_page()
    try:
        blocked = block_network(page)
        errors = []; page.on('pageerror', lambda e: errors.append(str(e)))
        assert page.goto((out/p['output_file']).as_uri()).ok, f'{nb}: {p["output_file"]} did not load'
        page.wait_for_load_state('load')
        title = page.inner_text('h1.title').strip()
        assert title and title == p['title'] and title != Path(nb).stem, f'{nb}: page title {title!r}'
        assert title in page.title()
        text = page.inner_text('main')
        assert 'output-file:' not in text and not re.search(r'^\s*#\s*\|', text, re.M), \
            f'{nb}: raw front matter or `#|` directives visible on the page'
        found = page.evaluate("""names => {
            const heads = [...document.querySelectorAll('main h2, main h3, main h4')].map(h => h.textContent.replace('\u00b6', '').trim());
            const pres = [...document.querySelectorAll('main pre')].map(p => p.textContent);
            return names.map(n => {
              const esc = n.replace(/[.]/g, '\\\\.');
              const sig = new RegExp('\\\\b(def|class)\\\\s+' + esc + '\\\\b');
              return [n, heads.includes(n), pres.some(t => sig.test(t))];
            });
        }""", names)
        undocumented = [n for n, head, sig in found if not (head and sig)]
        imgs = page.evaluate("""() => [...document.querySelectorAll('main .cell-output img')]
                                 .map(i => [i.complete, i.naturalWidth, i.naturalHeight])""")
        good = [i for i in imgs if i[0] and i[1] > 0 and i[2] > 0]
        if nb == next((n for n in NB_NAMES if expected_images(NBS/n)), NB_NAMES[0]):
            shot = test_out/f'docs_preview_{Path(p["output_file"]).stem}.png'
            page.screenshot(path=str(shot), full_page=True)
            print(f'\nscreenshot: {shot}')
        print(f'\n{nb} -> {p["output_file"]}: title {title!r}, module {mod}, {len(names)} exported functions/classes '
              f'documented, {len(good)}/{n_img} figures' + (f'; not checked (not functions/classes): {others}' if others else ''))
        assert not undocumented, f'{nb}: no show_doc signature on {p["output_file"]} for exported {undocumented}'
        assert len(good) >= n_img and len(imgs) == len(good), \
            f'{nb}: {len(good)} of {len(imgs)} images rendered, the notebook has {n_img} figure outputs'
        assert not blocked, f'{nb}: the page tried to reach the network: {blocked}'
        assert not errors, f'{nb}: JavaScript errors: {errors}'
    finally: page.close()

def test_links_resolve(preview):
    "Every relative link in the preview points at a page that exists (a missing #anchor is only reported)."
    out, _ = preview
    broken, anchors, ids = [], [], {}
    def ids_of(f):
        if f not in ids: ids[f] = set(re.findall(r'\sid="([^"]+)"', f.read_text(encoding='utf-8'))) if f.exists() else set()
        return ids[f]
    for f in sorted(out.glob('*.html')):
        for href in re.findall(r'href="([^"]+)"', f.read_text(encoding='utf-8')):
            if re.match(r'^[a-z][\w+.-]*:', href): continue          # http(s), mailto: not followed here
            target, _, frag = href.partition('#')
            tf = (out/target) if target else f
            if not tf.exists(): broken.append(f'{f.name}: {href}')
            elif frag and frag not in ids_of(tf): anchors.append(f'{f.name}: {href}')
    if anchors: print('\nlinks to anchors that do not exist (Quarto only warns):\n  ' + '\n  '.join(anchors))
    assert not broken, 'broken links in the preview:\n  ' + '\n  '.join(broken)

def test_signatures_show_no_markdown(preview):
    "`show_doc` signatures are code: nbdev's doc-link pass must not have left `[`name`](url)` inside them."
    import html as _html
    out, manifest = preview
    bad = []
    for p in manifest['pages']:
        page = (out/p['output_file']).read_text(encoding='utf-8')
        for block in re.findall(r'<div class="cell-output cell-output-asis">(.*?)</div>\s*</div>', page, re.S):
            for pre in re.findall(r'<pre>(.*?)</pre>', block, re.S):
                text = _html.unescape(re.sub(r'<[^>]+>', '', pre))
                bad += [f'{p["notebook"]}: {l.strip()[:140]}' for l in text.splitlines() if re.search(r'\[`[^`]+`\]\(\S+\)', l)]
    assert not bad, (
        'show_doc signatures on the site show raw markdown links (nbdev 2.4.14 links `names` in backticks inside the '
        'signature comments, and Quarto shows code blocks literally). Drop the backticks from these parameter comments, '
        f'or add an nbdev processor that unlinks fenced code in show_doc output:\n  ' + '\n  '.join(bad))
