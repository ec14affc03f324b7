-- Quarto filter (nbs/_quarto.yml): an "Open in Colab" and a "Download notebook" link under each page's title, so any
-- lesson runs in one click. HTML pages only (the README, rendered from index.ipynb as GitHub Markdown, gets none).
-- Colab opens the notebook from GitHub: `mlfound-colab` in _quarto.yml is https://colab.research.google.com/github/
-- <user>/<repo>/blob/<branch>/nbs/ (tests/test_docs.py checks it against settings.ini). The download is the site's
-- own copy of the notebook, nbs/<name>.ipynb, which tools/docs_postrender.py puts beside the pages after the render
-- (`data-noresolveinput`: Quarto links it as it is, without warning that no page is made from that .ipynb).
function Pandoc(doc)
  if not quarto.doc.is_format('html') then return nil end
  local nb = (quarto.doc.input_file or ''):match('([^/\\]+%.ipynb)$')
  local base = doc.meta['mlfound-colab'] and pandoc.utils.stringify(doc.meta['mlfound-colab'])
  if not nb or not base then return nil end
  local icon = function(name) return pandoc.RawInline('html', '<i class="bi bi-' .. name .. '" aria-hidden="true"></i> ') end
  local links = pandoc.Plain({
    pandoc.Link({icon('play-circle'), pandoc.Str('Open in Colab')}, base .. nb, '', pandoc.Attr('', {'colab-link'})),
    pandoc.Space(),
    pandoc.Link({icon('download'), pandoc.Str('Download notebook')}, 'nbs/' .. nb, '',
                pandoc.Attr('', {'download-link'}, {{'download', nb}, {'data-noresolveinput', '1'}})),
  })
  table.insert(doc.blocks, 1, pandoc.Div({links}, pandoc.Attr('', {'lesson-links'})))
  return doc
end
