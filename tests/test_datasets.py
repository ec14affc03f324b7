"""The cases of `mlfound.datasets` that don't belong in the narrative: corrupt, truncated, offline and concurrent.

Nothing here touches the internet. A real HTTP server on 127.0.0.1 serves small fake files that can be good, corrupt,
cut short or missing; a bound but never listening socket stands for a mirror that refuses connections. Every test gets
its own `MLFOUND_DATA` folder, and by default every mirror points at the refusing socket, so a test that forgets to
configure a mirror fails fast instead of reaching out. Each failure case also checks that nothing that looks like a
valid file (or a stray temporary) is left behind.
"""
import gzip, hashlib, http.server, io, os, socket, struct, subprocess, sys, tarfile, threading
from pathlib import Path

import numpy as np
import pytest
import torch

import mlfound.datasets as ds

# The real offline data, when this checkout has it: `$MLFOUND_DATA`, else `shared/data` beside the repository.
SHARED_DATA = Path(os.environ.get('MLFOUND_DATA') or Path(__file__).resolve().parents[2]/'shared'/'data')
T10K = ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')
needs_shared_mnist = pytest.mark.skipif(not all((SHARED_DATA/'mnist'/f).exists() for f in T10K),
                                        reason=f'no offline MNIST t10k files in {SHARED_DATA}/mnist')

def md5(b:bytes) -> str: return hashlib.md5(b).hexdigest()

def leftovers(folder:Path) -> list[str]:
    "Temporary files or folders (`.name.XXXX[.tmp]`) anywhere under `folder`."
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob('.*'))

# ---------------------------------------------------------------------------------------------------------------
# A local HTTP server with misbehaving routes
# ---------------------------------------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    "Serve `server.routes[path] = (mode, body)`; any other path is a 404."
    def do_GET(self):
        srv = self.server
        with srv.lock: srv.hits.append(self.path)
        mode, body = srv.routes.get(self.path, ('status', 404))
        if mode == 'status': return self.send_error(body)
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if mode == 'ok': self.wfile.write(body)
        elif mode == 'truncate':   # promise len(body) bytes, send half, hang up
            self.wfile.write(body[:len(body)//2])
            self.wfile.flush()
            self.close_connection = True
        elif mode == 'together':   # wait until `srv.barrier.parties` requests are in flight, then interleave
            srv.barrier.wait()
            step = -(-len(body) // 4)
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i+step])
                self.wfile.flush()
                srv.barrier.wait()
        else: raise ValueError(mode)

    def log_message(self, *args): pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def __init__(self):
        super().__init__(('127.0.0.1', 0), _Handler)
        self.routes, self.hits, self.lock = {}, [], threading.Lock()
        self.barrier = threading.Barrier(2, timeout=10)
    def url(self, path:str='') -> str: return f'http://127.0.0.1:{self.server_address[1]}/{path}'
    def serve(self, path:str, body, mode:str='ok'):
        "Serve `body` at `/path` (mode: 'ok', 'truncate', 'together', or 'status' with an int code as body)."
        self.routes['/' + path] = (mode, body)
    def reset(self):
        self.routes.clear(); self.hits.clear()
        self.barrier = threading.Barrier(2, timeout=10)


@pytest.fixture(scope='module')
def _server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    yield srv
    srv.shutdown(); srv.server_close(); thread.join(5)

@pytest.fixture
def srv(_server):
    _server.reset()
    yield _server
    _server.reset()

@pytest.fixture(scope='module')
def refused():
    "Base URL of a port that is bound but never listens: every connection is refused at once."
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    yield f'http://127.0.0.1:{s.getsockname()[1]}/'
    s.close()

@pytest.fixture(autouse=True)
def data(monkeypatch, tmp_path, refused):
    "An empty `MLFOUND_DATA` per test, no `MLFOUND_MNIST`, no proxies, and every mirror refusing connections."
    d = tmp_path/'data'
    monkeypatch.setenv('MLFOUND_DATA', str(d))
    monkeypatch.delenv('MLFOUND_MNIST', raising=False)
    for v in ('no_proxy', 'NO_PROXY'): monkeypatch.setenv(v, '*')
    monkeypatch.setattr(ds, 'MNIST_MIRRORS', [refused])
    monkeypatch.setattr(ds, 'MNIST_SAMPLE_URL', refused + 'mnist_sample.tgz')
    return d

# ---------------------------------------------------------------------------------------------------------------
# Fake IDX files and archives
# ---------------------------------------------------------------------------------------------------------------

IDX_CODES = {np.dtype('uint8'): 0x08, np.dtype('int8'): 0x09, np.dtype('>i2'): 0x0B, np.dtype('>i4'): 0x0C,
             np.dtype('>f4'): 0x0D, np.dtype('>f8'): 0x0E}

def idx_bytes(a:np.ndarray, dtype=None) -> bytes:
    "Encode `a` as an IDX file: 00 00 <type> <ndim>, big-endian uint32 dims, big-endian data."
    dt = np.dtype(dtype or a.dtype)
    return (struct.pack('>2xBB', IDX_CODES[dt], a.ndim) + struct.pack(f'>{a.ndim}I', *a.shape)
            + np.ascontiguousarray(a, dtype=dt).tobytes())

def gz(b:bytes) -> bytes: return gzip.compress(b, mtime=0)

RNG = np.random.default_rng(0)
FAKE = dict(train_x=RNG.integers(0, 256, (6, 28, 28), dtype=np.uint8), train_y=np.array([3, 1, 4, 1, 5, 9], np.uint8),
            test_x=RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8), test_y=np.array([2, 7, 1, 8], np.uint8))
FAKE_FILES = {'train-images-idx3-ubyte.gz': gz(idx_bytes(FAKE['train_x'])),
              'train-labels-idx1-ubyte.gz': gz(idx_bytes(FAKE['train_y'])),
              't10k-images-idx3-ubyte.gz':  gz(idx_bytes(FAKE['test_x'])),
              't10k-labels-idx1-ubyte.gz':  gz(idx_bytes(FAKE['test_y']))}
GOOD = FAKE_FILES['t10k-labels-idx1-ubyte.gz']   # a small file to download in the generic tests
GOOD_MD5 = md5(GOOD)
BAD = b'<html>a captive portal, not MNIST</html>'

@pytest.fixture
def fake_mnist(monkeypatch):
    "Make `MNIST_FILES` expect the fake files' md5s."
    monkeypatch.setattr(ds, 'MNIST_FILES', {f: md5(b) for f, b in FAKE_FILES.items()})
    return FAKE_FILES

def make_tgz(members:dict[str, bytes]) -> bytes:
    "A deterministic .tgz holding `members` (name -> content) in order."
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode='wb', mtime=0) as z, tarfile.open(fileobj=z, mode='w') as tf:
        for name, content in members.items():
            info = tarfile.TarInfo(name); info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    return buf.getvalue()

# Over 1 MiB of incompressible data, so that `MNIST_SAMPLE_MD5` (of the first MiB) does not cover the whole archive:
# the big member comes last, so a cut archive has intact small members before it.
SAMPLE_MEMBERS = {'mnist_sample/labels.csv': b'name,label\ntrain/3/0.png,0\n',
                  'mnist_sample/train/3/0.png': b'png3', 'mnist_sample/train/7/1.png': b'png7',
                  'mnist_sample/valid/3/2.png': b'png3', 'mnist_sample/valid/7/3.png': RNG.bytes(1_300_000)}
SAMPLE_TGZ = make_tgz(SAMPLE_MEMBERS)
assert len(SAMPLE_TGZ) > (1 << 20) + 100_000

def use_sample(monkeypatch, srv, body:bytes, size:int|None=None, mode:str='ok') -> None:
    "Serve `body` as the sample archive; make the constants expect `size` bytes and `body`'s first-MiB md5."
    srv.serve('fastai/mnist_sample.tgz', body, mode)
    monkeypatch.setattr(ds, 'MNIST_SAMPLE_URL', srv.url('fastai/mnist_sample.tgz'))
    monkeypatch.setattr(ds, 'MNIST_SAMPLE_SIZE', len(body) if size is None else size)
    monkeypatch.setattr(ds, 'MNIST_SAMPLE_MD5', md5(body[:1 << 20]))

# ---------------------------------------------------------------------------------------------------------------
# md5sum / check_file
# ---------------------------------------------------------------------------------------------------------------

def test_md5sum_and_check_file(tmp_path):
    p = tmp_path/'f.bin'
    content = RNG.bytes(3 * (1 << 20) // 2)   # spans two read chunks
    p.write_bytes(content)
    assert ds.md5sum(p) == md5(content)
    assert ds.md5sum(p, limit=1 << 20) == md5(content[:1 << 20])
    assert ds.md5sum(p, limit=10) == md5(content[:10])
    assert ds.check_file(p, md5(content), len(content)) is None
    assert ds.check_file(p, md5(content[:1 << 20]), len(content), md5_limit=1 << 20) is None
    msg = ds.check_file(p, md5(content), len(content) - 1)
    assert 'f.bin' in msg and f'{len(content):,}' in msg and f'{len(content)-1:,}' in msg
    msg = ds.check_file(p, '0' * 32)
    assert 'f.bin' in msg and md5(content) in msg and '0' * 32 in msg

# ---------------------------------------------------------------------------------------------------------------
# download_url / fetch
# ---------------------------------------------------------------------------------------------------------------

def test_fetch_from_first_mirror(srv, tmp_path):
    srv.serve('m1/f.gz', GOOD); srv.serve('m2/f.gz', GOOD)
    folder = tmp_path/'cache'
    got = ds.fetch('f.gz', GOOD_MD5, [srv.url('m1/'), srv.url('m2/')], folder)
    assert got == folder/'f.gz' and got.read_bytes() == GOOD
    assert srv.hits == ['/m1/f.gz']
    assert sorted(p.name for p in folder.iterdir()) == ['f.gz']

@pytest.mark.parametrize('failure', ['corrupt', 'missing', 'refused', 'truncated'])
def test_fetch_falls_through_to_next_mirror(srv, tmp_path, refused, failure):
    first = {'corrupt': ('m1/', 'ok', BAD), 'missing': ('m1/', 'status', 404),
             'refused': (None, None, None), 'truncated': ('m1/', 'truncate', GOOD)}[failure]
    if first[0]: srv.serve(first[0] + 'f.gz', first[2], first[1])
    srv.serve('m2/f.gz', GOOD)
    folder = tmp_path/'cache'
    got = ds.fetch('f.gz', GOOD_MD5, [srv.url('m1/') if first[0] else refused, srv.url('m2/')], folder)
    assert got.read_bytes() == GOOD
    assert srv.hits == (['/m1/f.gz'] if first[0] else []) + ['/m2/f.gz']
    assert sorted(p.name for p in folder.iterdir()) == ['f.gz']

def test_fetch_all_mirrors_fail(srv, tmp_path, refused):
    srv.serve('bad/f.gz', BAD); srv.serve('cut/f.gz', GOOD, 'truncate')
    folder = tmp_path/'cache'
    mirrors = [srv.url('gone/'), refused, srv.url('bad/'), srv.url('cut/')]
    with pytest.raises(ds.DownloadError) as e: ds.fetch('f.gz', GOOD_MD5, mirrors, folder)
    msg = str(e.value)
    assert 'f.gz' in msg and str(folder) in msg and 'MLFOUND_DATA' in msg
    for m in mirrors: assert m + 'f.gz' in msg   # every mirror tried, each with its own reason
    assert '404' in msg and GOOD_MD5 in msg and md5(BAD) in msg
    assert len(srv.hits) == 3
    assert not folder.exists() or list(folder.iterdir()) == []   # no file, no temporary

def test_fetch_no_mirrors(tmp_path):
    with pytest.raises(ds.DownloadError, match='no mirrors'): ds.fetch('f.gz', GOOD_MD5, [], tmp_path/'cache')
    assert not (tmp_path/'cache'/'f.gz').exists()

def test_mnist_file_offline_error_names_file_folder_and_env(data):
    with pytest.raises(ds.DownloadError) as e: ds.mnist_file('t10k-labels-idx1-ubyte.gz')
    msg = str(e.value)
    assert 't10k-labels-idx1-ubyte.gz' in msg and str(data/'mnist') in msg and 'MLFOUND_DATA' in msg
    assert not (data/'mnist').exists() or list((data/'mnist').iterdir()) == []

# ---------------------------------------------------------------------------------------------------------------
# atomic_write: the one way the library writes a file
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('exc', [RuntimeError, KeyboardInterrupt])
def test_atomic_write_failure_leaves_dest_untouched(tmp_path, exc):
    dest = tmp_path/'f.bin'
    dest.write_bytes(b'old')
    with pytest.raises(exc):
        with ds.atomic_write(dest) as f:
            f.write(b'half')
            raise exc('stop')
    assert dest.read_bytes() == b'old' and leftovers(tmp_path) == []
    with pytest.raises(exc):
        with ds.atomic_write(tmp_path/'new.bin') as f: raise exc('stop')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['f.bin']   # no empty file appears

def test_atomic_write_replaces_at_the_end(tmp_path):
    dest = tmp_path/'f.bin'
    dest.write_bytes(b'old')
    with ds.atomic_write(dest) as f:
        f.write(b'new')
        assert dest.read_bytes() == b'old' and len(leftovers(tmp_path)) == 1
    assert dest.read_bytes() == b'new' and leftovers(tmp_path) == []

def test_atomic_write_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        with ds.atomic_write(tmp_path/'no'/'f.bin'): pass

@pytest.mark.parametrize('mask', [0o022, 0o077, 0o002])
def test_atomic_write_mode_follows_umask_without_calling_umask(tmp_path, monkeypatch, mask):
    "The file gets `0o666 & ~umask`, as `open` gives, and `atomic_write` never sets the umask to read it."
    old = os.umask(mask)
    try:
        def no_umask(*args): raise AssertionError('atomic_write must not call os.umask')
        monkeypatch.setattr(os, 'umask', no_umask)
        with ds.atomic_write(tmp_path/'f.bin') as f: f.write(b'x')
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert (tmp_path/'f.bin').stat().st_mode & 0o777 == 0o666 & ~mask

def test_download_url_truncated_body(srv, tmp_path):
    srv.serve('f.gz', GOOD, 'truncate')
    dest = tmp_path/'cache'/'f.gz'
    with pytest.raises((ds.ChecksumError, ds.DownloadError, OSError)):
        ds.download_url(srv.url('f.gz'), dest, GOOD_MD5, show_progress=False)
    assert list(dest.parent.iterdir()) == []

def test_download_url_truncated_body_without_md5(srv, tmp_path):
    srv.serve('f.gz', GOOD, 'truncate')
    dest = tmp_path/'cache'/'f.gz'
    with pytest.raises(OSError, match='bytes'): ds.download_url(srv.url('f.gz'), dest, show_progress=False)
    assert list(dest.parent.iterdir()) == []

def test_download_url_checks_size(srv, tmp_path):
    srv.serve('f.gz', GOOD)
    dest = tmp_path/'f.gz'
    with pytest.raises(ds.ChecksumError, match=f'expected {len(GOOD)+1:,}'):
        ds.download_url(srv.url('f.gz'), dest, size=len(GOOD) + 1, show_progress=False)
    assert list(tmp_path.iterdir()) == []
    assert ds.download_url(srv.url('f.gz'), dest, GOOD_MD5, len(GOOD), show_progress=False).read_bytes() == GOOD

def test_download_url_shows_progress(srv, tmp_path, monkeypatch):
    srv.serve('f.gz', GOOD)
    calls = []
    def spy(it, total=None, **kw): calls.append(total); return it
    monkeypatch.setattr(ds, 'progress_bar', spy)
    ds.download_url(srv.url('f.gz'), tmp_path/'a.gz', GOOD_MD5)
    assert calls == [1]   # one 64 KiB chunk
    ds.download_url(srv.url('f.gz'), tmp_path/'b.gz', GOOD_MD5, show_progress=False)
    assert calls == [1]

def test_download_url_file_mode_follows_umask(srv, tmp_path):
    srv.serve('f.gz', GOOD)
    old = os.umask(0o022)
    try: dest = ds.download_url(srv.url('f.gz'), tmp_path/'f.gz', GOOD_MD5, show_progress=False)
    finally: os.umask(old)
    assert dest.stat().st_mode & 0o777 == 0o644

def test_corrupt_local_file_is_replaced(srv, tmp_path):
    folder = tmp_path/'cache'; folder.mkdir()
    (folder/'f.gz').write_bytes(BAD)
    srv.serve('m2/f.gz', GOOD)
    got = ds.fetch('f.gz', GOOD_MD5, [srv.url('m1/'), srv.url('m2/')], folder)
    assert got.read_bytes() == GOOD and leftovers(folder) == []

def test_corrupt_local_file_kept_when_offline(srv, tmp_path, refused):
    folder = tmp_path/'cache'; folder.mkdir()
    (folder/'f.gz').write_bytes(BAD)
    srv.serve('m2/f.gz', BAD + b'!')
    with pytest.raises(ds.ChecksumError) as e:
        ds.fetch('f.gz', GOOD_MD5, [refused, srv.url('m2/')], folder)
    msg = str(e.value)
    assert str(folder/'f.gz') in msg and md5(BAD) in msg and GOOD_MD5 in msg
    assert (folder/'f.gz').read_bytes() == BAD   # nothing lost
    assert sorted(p.name for p in folder.iterdir()) == ['f.gz']

def test_valid_local_file_needs_no_network(srv, tmp_path, refused):
    folder = tmp_path/'cache'; folder.mkdir()
    (folder/'f.gz').write_bytes(GOOD)
    srv.serve('m/f.gz', BAD)   # a mirror that would break the file if it were asked
    assert ds.fetch('f.gz', GOOD_MD5, [srv.url('m/'), refused], folder).read_bytes() == GOOD
    assert ds.fetch('f.gz', GOOD_MD5, [refused], folder).read_bytes() == GOOD
    assert srv.hits == []

def test_concurrent_fetch_of_one_file(srv, tmp_path):
    "Two fetches of one file, both in flight at once (the server waits for both), each see a valid file."
    body = RNG.bytes(200_000)
    srv.serve('f.bin', body, 'together')
    folder, results = tmp_path/'cache', [None, None]
    def work(i):
        try: results[i] = ds.fetch('f.bin', md5(body), [srv.url()], folder).read_bytes()
        except BaseException as e: results[i] = e
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads: t.start()
    for t in threads: t.join(20)
    assert srv.hits == ['/f.bin', '/f.bin']
    assert results == [body, body]
    assert sorted(p.name for p in folder.iterdir()) == ['f.bin']

# ---------------------------------------------------------------------------------------------------------------
# read_idx
# ---------------------------------------------------------------------------------------------------------------

TORCH_OF = {'uint8': torch.uint8, 'int8': torch.int8, 'int16': torch.int16, 'int32': torch.int32,
            'float32': torch.float32, 'float64': torch.float64}

@pytest.mark.parametrize('zipped', [False, True], ids=['raw', 'gz'])
@pytest.mark.parametrize('dtype', list(IDX_CODES), ids=lambda d: d.name)
def test_read_idx_round_trip(tmp_path, dtype, zipped):
    a = np.arange(-12, 12).reshape(2, 3, 4) * (1000 if dtype.itemsize > 1 else 5)
    if dtype.kind == 'f': a = a / 7
    if dtype.kind == 'u': a = np.abs(a)
    a = a.astype(dtype)
    p = tmp_path/'a.idx'
    p.write_bytes(gz(idx_bytes(a)) if zipped else idx_bytes(a))
    t = ds.read_idx(p)
    assert t.dtype == TORCH_OF[dtype.name] and tuple(t.shape) == (2, 3, 4)
    assert np.array_equal(t.numpy(), a.astype(dtype.newbyteorder('=')))

def test_read_idx_one_dim_labels(tmp_path):
    p = tmp_path/'labels.gz'; p.write_bytes(GOOD)
    assert ds.read_idx(p).tolist() == FAKE['test_y'].tolist()

@pytest.mark.parametrize('cut', [1, 784, 784*3 + 1], ids=['1byte', '1image', '3images+1'])
def test_read_idx_truncated_data(tmp_path, cut):
    raw = idx_bytes(FAKE['test_x'])
    p = tmp_path/'x.idx'; p.write_bytes(raw[:-cut])
    with pytest.raises(ValueError, match='truncated') as e: ds.read_idx(p)
    assert '(4, 28, 28)' in str(e.value) and 'x.idx' in str(e.value)

def test_read_idx_longer_than_declared(tmp_path):
    p = tmp_path/'x.idx'; p.write_bytes(idx_bytes(FAKE['test_x']) + b'\0' * 10)
    with pytest.raises(ValueError, match='longer than declared'): ds.read_idx(p)

def test_read_idx_truncated_gzip(tmp_path):
    p = tmp_path/'x.gz'; p.write_bytes(FAKE_FILES['t10k-images-idx3-ubyte.gz'][:-100])
    with pytest.raises(ValueError, match='gzip') as e: ds.read_idx(p)
    assert 'x.gz' in str(e.value)

def test_read_idx_bad_gzip_crc(tmp_path):
    raw = bytearray(FAKE_FILES['t10k-images-idx3-ubyte.gz']); raw[-6] ^= 1   # the stored CRC32
    p = tmp_path/'x.gz'; p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match='gzip'): ds.read_idx(p)

def test_read_idx_damaged_gzip_stream(tmp_path):
    raw = bytearray(gz(RNG.integers(0, 4, 50_000, dtype=np.uint8).tobytes()))
    for i in range(20, 60): raw[i] ^= 0xFF
    p = tmp_path/'x.gz'; p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match='gzip'): ds.read_idx(p)

@pytest.mark.parametrize('content', [b'\x89PNG\r\n\x1a\n' + b'\0' * 40, b'0,5\n1,0\n2,4\n', b'', b'\0\0',
                                     b'\0\0\x0a\x01\0\0\0\x01x', b'\x01\0\x08\x01\0\0\0\x01x'],
                         ids=['png', 'text', 'empty', 'two-bytes', 'unknown-type', 'nonzero-magic'])
def test_read_idx_not_idx(tmp_path, content):
    p = tmp_path/'x.idx'; p.write_bytes(content)
    with pytest.raises(ValueError, match='not an IDX file') as e: ds.read_idx(p)
    assert 'x.idx' in str(e.value)

def test_read_idx_gzipped_not_idx(tmp_path):
    p = tmp_path/'x.gz'; p.write_bytes(gz(b'hello, world'))
    with pytest.raises(ValueError, match='not an IDX file'): ds.read_idx(p)

@pytest.mark.parametrize('zipped', [False, True], ids=['raw', 'gz'])
def test_read_idx_header_shorter_than_dims(tmp_path, zipped):
    raw = b'\0\0\x08\x03' + struct.pack('>I', 10)   # declares 3 dims, holds 1
    p = tmp_path/'x.idx'; p.write_bytes(gz(raw) if zipped else raw)
    with pytest.raises(ValueError, match='header') as e: ds.read_idx(p)
    assert '8 bytes' in str(e.value) and '16' in str(e.value)

# ---------------------------------------------------------------------------------------------------------------
# get_mnist
# ---------------------------------------------------------------------------------------------------------------

def test_get_mnist_unknown_name(monkeypatch):
    with pytest.raises(ValueError) as e: ds.get_mnist('fashion')
    msg = str(e.value)
    assert 'fashion' in msg and all(n in msg for n in ds.MNIST_DATASETS)
    monkeypatch.setenv('MLFOUND_MNIST', 'mnist_t100')
    with pytest.raises(ValueError, match='mnist_t100'): ds.get_mnist()

def test_mnist_name_resolution(monkeypatch):
    assert ds.mnist_name() == 'mnist'
    monkeypatch.setenv('MLFOUND_MNIST', 'mnist_t10k')
    assert ds.mnist_name() == 'mnist_t10k' and ds.mnist_name('mnist') == 'mnist'

def check_mnist(tensors, n_train, n_valid):
    x_train, y_train, x_valid, y_valid = tensors
    assert [tuple(t.shape) for t in tensors] == [(n_train, 784), (n_train,), (n_valid, 784), (n_valid,)]
    assert [t.dtype for t in tensors] == [torch.float32, torch.int64] * 2
    for x, y in ((x_train, y_train), (x_valid, y_valid)):
        assert 0 <= x.min() and x.max() <= 1 and 0 <= y.min() and y.max() <= 9

@needs_shared_mnist
def test_get_mnist_t10k_offline(monkeypatch, capsys):
    monkeypatch.setenv('MLFOUND_DATA', str(SHARED_DATA))
    tensors = ds.get_mnist('mnist_t10k', verbose=True)
    check_mnist(tensors, 8000, 2000)
    x_train, y_train, x_valid, y_valid = tensors
    assert x_train.max() == 1 and set(y_train.tolist()) == set(range(10)) == set(y_valid.tolist())
    assert 'mnist_t10k' in capsys.readouterr().out
    monkeypatch.setenv('MLFOUND_MNIST', 'mnist_t10k')
    assert torch.equal(ds.get_mnist()[3], y_valid)

def test_get_mnist_downloads_fake_files(srv, data, fake_mnist, monkeypatch, refused):
    for f, b in fake_mnist.items(): srv.serve('m2/' + f, b)
    monkeypatch.setattr(ds, 'MNIST_MIRRORS', [refused, srv.url('m2/')])
    tensors = ds.get_mnist('mnist')
    check_mnist(tensors, 6, 4)
    x_train, y_train, x_valid, y_valid = tensors
    assert torch.equal(x_train, torch.tensor(FAKE['train_x'].reshape(6, 784) / 255, dtype=torch.float32))
    assert torch.equal(x_valid, torch.tensor(FAKE['test_x'].reshape(4, 784) / 255, dtype=torch.float32))
    assert y_train.tolist() == FAKE['train_y'].tolist() and y_valid.tolist() == FAKE['test_y'].tolist()
    assert sorted(srv.hits) == sorted('/m2/' + f for f in fake_mnist)
    assert sorted(p.name for p in (data/'mnist').iterdir()) == sorted(fake_mnist)
    monkeypatch.setattr(ds, 'MNIST_MIRRORS', [refused])   # now cached: works offline
    assert all(torch.equal(a, b) for a, b in zip(ds.get_mnist('mnist'), tensors))

def test_get_mnist_t10k_fetches_only_t10k(srv, data, fake_mnist, monkeypatch):
    for f, b in fake_mnist.items(): srv.serve(f, b)
    monkeypatch.setattr(ds, 'MNIST_MIRRORS', [srv.url()])
    x_train, y_train, x_valid, y_valid = ds.get_mnist('mnist_t10k')
    assert len(x_train) == 4 and len(x_valid) == 0   # the fake t10k has only 4 images, all before the 8000 split
    assert sorted(srv.hits) == sorted('/' + f for f in T10K)

def test_get_mnist_images_labels_disagree(srv, fake_mnist, monkeypatch):
    labels = gz(idx_bytes(FAKE['test_y'][:3]))
    monkeypatch.setitem(ds.MNIST_FILES, 't10k-labels-idx1-ubyte.gz', md5(labels))
    for f, b in fake_mnist.items(): srv.serve(f, b)
    srv.serve('t10k-labels-idx1-ubyte.gz', labels)
    monkeypatch.setattr(ds, 'MNIST_MIRRORS', [srv.url()])
    with pytest.raises(ValueError, match='4 images, 3 labels'): ds.get_mnist('mnist')

@needs_shared_mnist
def test_get_mnist_in_a_fresh_interpreter(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'MLFOUND_MNIST'} | {'MLFOUND_DATA': str(SHARED_DATA)}
    code = "import mlfound.datasets as d; print([tuple(t.shape) for t in d.get_mnist('mnist_t10k')])"
    r = subprocess.run([sys.executable, '-c', code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '[(8000, 784), (8000,), (2000, 784), (2000,)]'

# ---------------------------------------------------------------------------------------------------------------
# get_mnist_sample / untar_to
# ---------------------------------------------------------------------------------------------------------------

def make_sample_folder(dest:Path, parts=ds._SAMPLE_PARTS):
    for part in parts:
        if part.endswith('.csv'): (dest/part).parent.mkdir(parents=True, exist_ok=True); (dest/part).write_text('x')
        else: (dest/part).mkdir(parents=True)

def test_sample_folder_used_as_is(srv, data, monkeypatch):
    make_sample_folder(data/'mnist_sample')
    use_sample(monkeypatch, srv, BAD)   # a server that would fail if it were asked
    assert ds.get_mnist_sample() == data/'mnist_sample'
    assert srv.hits == [] and sorted(p.name for p in data.iterdir()) == ['mnist_sample']

@pytest.mark.skipif(not (SHARED_DATA/'mnist_sample').exists(), reason=f'no {SHARED_DATA}/mnist_sample')
def test_sample_shared_folder(monkeypatch):
    monkeypatch.setenv('MLFOUND_DATA', str(SHARED_DATA))
    p = ds.get_mnist_sample()
    assert p == SHARED_DATA/'mnist_sample'
    assert next((p/'train'/'3').glob('*.png'), None) is not None and next((p/'valid'/'7').glob('*.png'), None)

def test_sample_incomplete_folder(data):
    make_sample_folder(data/'mnist_sample', ('train/3', 'train/7', 'labels.csv'))
    with pytest.raises(FileNotFoundError) as e: ds.get_mnist_sample()
    msg = str(e.value)
    assert str(data/'mnist_sample') in msg and 'valid/3' in msg and 'valid/7' in msg and 'delete' in msg

def test_sample_download(srv, data, monkeypatch):
    use_sample(monkeypatch, srv, SAMPLE_TGZ)
    p = ds.get_mnist_sample()
    assert p == data/'mnist_sample'
    for name, content in SAMPLE_MEMBERS.items(): assert (data/name).read_bytes() == content
    assert leftovers(data) == [] and sorted(q.name for q in data.iterdir()) == ['mnist_sample', 'mnist_sample.tgz']
    assert ds.get_mnist_sample() == p and len(srv.hits) == 1   # second call: no network

def test_sample_served_wrong_size(srv, data, monkeypatch):
    # cut short after its first MiB: only the size check can tell
    use_sample(monkeypatch, srv, SAMPLE_TGZ[:-1000], size=len(SAMPLE_TGZ))
    assert md5(SAMPLE_TGZ[:-1000][:1 << 20]) == ds.MNIST_SAMPLE_MD5
    with pytest.raises(ds.DownloadError) as e: ds.get_mnist_sample()
    assert f'expected {len(SAMPLE_TGZ):,}' in str(e.value) and 'mnist_sample.tgz' in str(e.value)
    assert list(data.iterdir()) == []   # no folder, no archive, no temporary

def test_sample_served_wrong_md5(srv, data, monkeypatch):
    bad = bytes([SAMPLE_TGZ[0] ^ 1]) + SAMPLE_TGZ[1:]   # right size, first MiB differs
    use_sample(monkeypatch, srv, bad)
    monkeypatch.setattr(ds, 'MNIST_SAMPLE_MD5', md5(SAMPLE_TGZ[:1 << 20]))
    with pytest.raises(ds.DownloadError) as e: ds.get_mnist_sample()
    assert md5(bad[:1 << 20]) in str(e.value) and ds.MNIST_SAMPLE_MD5 in str(e.value)
    assert list(data.iterdir()) == []

def test_sample_local_wrong_size_offline(srv, data, monkeypatch, refused):
    use_sample(monkeypatch, srv, SAMPLE_TGZ)
    monkeypatch.setattr(ds, 'MNIST_SAMPLE_URL', refused + 'mnist_sample.tgz')
    data.mkdir(); (data/'mnist_sample.tgz').write_bytes(SAMPLE_TGZ[:-1000])
    with pytest.raises(ds.ChecksumError) as e: ds.get_mnist_sample()
    msg = str(e.value)
    assert str(data/'mnist_sample.tgz') in msg and f'{len(SAMPLE_TGZ):,}' in msg and f'{len(SAMPLE_TGZ)-1000:,}' in msg
    assert sorted(p.name for p in data.iterdir()) == ['mnist_sample.tgz']
    assert (data/'mnist_sample.tgz').read_bytes() == SAMPLE_TGZ[:-1000]

@pytest.mark.parametrize('body', [b'not a tar archive\n' * 100, SAMPLE_TGZ[:len(SAMPLE_TGZ) - 200_000]],
                         ids=['not-a-tar', 'cut-mid-member'])
def test_sample_corrupt_archive_with_matching_checksums(srv, data, monkeypatch, body):
    "The archive passes its checks (the constants are made to match) but can't be unpacked: no folder appears."
    use_sample(monkeypatch, srv, body)
    with pytest.raises(Exception) as e: ds.get_mnist_sample()
    assert not isinstance(e.value, (AssertionError, ds.DownloadError, ds.ChecksumError))
    assert sorted(p.name for p in data.iterdir()) == ['mnist_sample.tgz']   # no folder, partial or temporary

def test_sample_corrupt_archive_error_names_it(srv, data, monkeypatch):
    use_sample(monkeypatch, srv, b'not a tar archive\n' * 100)
    with pytest.raises(ValueError) as e: ds.get_mnist_sample()
    assert str(data/'mnist_sample.tgz') in str(e.value)

def test_sample_offline_hint(data):
    with pytest.raises(ds.DownloadError) as e: ds.get_mnist_sample()
    assert 'MLFOUND_DATA' in str(e.value) and 'mnist/mnist_sample.tgz' not in str(e.value)

def test_sample_archive_missing_parts(srv, data, monkeypatch):
    use_sample(monkeypatch, srv, make_tgz({'mnist_sample/labels.csv': b'x', 'mnist_sample/train/3/0.png': b'p'}))
    with pytest.raises(ValueError, match='valid/7'): ds.get_mnist_sample()

def test_untar_to_needs_one_top_folder(tmp_path):
    archive = tmp_path/'a.tgz'
    archive.write_bytes(make_tgz({'a/x.txt': b'1', 'b/y.txt': b'2'}))
    with pytest.raises(ValueError, match='one folder'): ds.untar_to(archive, tmp_path/'out')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.tgz']

def test_untar_to_lost_race_keeps_winner(tmp_path):
    "When another process renamed its copy into place first, `untar_to` uses it and cleans up its own."
    archive = tmp_path/'a.tgz'
    archive.write_bytes(make_tgz({'top/x.txt': b'mine'}))
    (tmp_path/'out').mkdir(); (tmp_path/'out'/'x.txt').write_bytes(b'winner')
    assert ds.untar_to(archive, tmp_path/'out') == tmp_path/'out'
    assert (tmp_path/'out'/'x.txt').read_bytes() == b'winner'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.tgz', 'out']

def test_concurrent_get_mnist_sample(srv, data, monkeypatch):
    "Two first calls at once both download (the server waits for both), both unpack, both get the complete folder."
    use_sample(monkeypatch, srv, SAMPLE_TGZ, mode='together')
    results = [None, None]
    def work(i):
        try: results[i] = ds.get_mnist_sample()
        except BaseException as e: results[i] = e
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads: t.start()
    for t in threads: t.join(30)
    assert results == [data/'mnist_sample'] * 2 and len(srv.hits) == 2
    for name, content in SAMPLE_MEMBERS.items(): assert (data/name).read_bytes() == content
    assert leftovers(data) == [] and sorted(q.name for q in data.iterdir()) == ['mnist_sample', 'mnist_sample.tgz']
