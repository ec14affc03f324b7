"""Property-based tests (hypothesis): mlfound used as a library, the way users use it, against PyTorch or a direct computation.

Losses and their gradients, the accuracy for every target layout, `collate` and `DataLoader`, and the Learner with
random small models, losses and callbacks that raise. Below them, one example test for each crash or wrong number
of issue 23 that belongs to `mlfound.losses`, `mlfound.training` and `mlfound.learner`.

The profile comes from tests/conftest.py: `ci` (25 examples per property, derandomized) unless
`HYPOTHESIS_PROFILE=dev` (300, random) is set.
"""
from __future__ import annotations
import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch.utils.data as tud
from torch import nn

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import event, example, given, strategies as st

from mlfound.learner import (Callback, CancelBatchException, CancelEpochException, CancelFitException, Learner,
                             LRFinderCB, MetricsCB, ProgressCB, RecorderCB, TrainCB)
from mlfound.losses import (binary_accuracy, cross_entropy, cross_entropy_grad, log_softmax, logsumexp,
                            multiclass_accuracy, nll, softmax)
from mlfound.training import SGD, DataLoader, DataLoaders, Dataset, collate, fit

from conftest import close, unit

INT_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
FLOAT_DTYPES = [torch.float32, torch.float64]

# ---------------------------------------------------------------------------------------------------------------
# Losses and their gradients

@st.composite
def logits_and_labels(draw):
    "(N, C) logits of a float dtype, at a scale from 1 to 1e4 (either sign, or spread out), and labels of an integer dtype."
    n, c = draw(st.integers(1, 12)), draw(st.integers(2, 7))
    dtype, ldtype = draw(st.sampled_from(FLOAT_DTYPES)), draw(st.sampled_from(INT_DTYPES))
    scale, shift = draw(st.sampled_from([1., 30., 1e4])), draw(st.sampled_from([0., 1e4, -1e4]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = (torch.randn(n, c, generator=g, dtype=torch.float64) * scale + shift).to(dtype)
    y = torch.randint(0, c, (n,), generator=g)
    return x, y.to(ldtype)

def loss_tol(x:torch.Tensor) -> float:
    """A bound on |ours - torch| for log-softmax, logsumexp and cross-entropy of `x` (N, C).
    logsumexp is m + log(sum of C terms in [1, C]): the sum carries <= C roundings, relative, so its log <= C*u absolute;
    adding m rounds at |m|*u; a mean over N rows adds N*u relative. Each side has such an error, so twice it, times 4."""
    n, c = x.shape
    return 8 * unit(x.dtype) * ((c + n + 2) + 2 * max(1., x.abs().max().item()) * (1 + n * unit(x.dtype)))

@given(logits_and_labels())
@example((torch.randn(10, 10, generator=torch.Generator().manual_seed(0)), torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], dtype=torch.uint8)))
def test_losses_match_torch(xy):
    "cross_entropy, nll, log_softmax, logsumexp and softmax agree with PyTorch for any shape, dtype, label dtype, scale."
    x, y = xy
    y64, tol = y.long(), loss_tol(x)
    close(log_softmax(x), F.log_softmax(x, -1), tol, 'log_softmax')
    close(logsumexp(x), torch.logsumexp(x, -1), tol, 'logsumexp')
    close(softmax(x), torch.softmax(x, -1), 8 * (x.shape[1] + 2) * unit(x.dtype), 'softmax')   # entries in [0, 1]
    ce = cross_entropy(x, y)
    assert ce.isfinite(), f'cross_entropy is {ce} for logits up to {x.abs().max():.3g}'
    close(ce, F.cross_entropy(x, y64), tol, 'cross_entropy')
    close(nll(F.log_softmax(x, -1), y), F.nll_loss(F.log_softmax(x, -1), y64), tol, 'nll')
    assert torch.equal(ce, cross_entropy(x, y64)), f'labels of dtype {y.dtype} give another loss than int64'   # the same indices

@given(logits_and_labels())
def test_cross_entropy_grad_matches_autograd(xy):
    "cross_entropy_grad equals autograd's gradient of F.cross_entropy, for every label dtype, at any scale."
    x, y = xy
    z = x.clone().requires_grad_()
    F.cross_entropy(z, y.long()).backward()
    # Entries are (p - onehot)/N. softmax(x - max) has C roundings in its sum (absolute <= C*u on p); PyTorch takes p as
    # exp(log_softmax), whose log_softmax is rounded at |max|*u: a relative error of |max|*u on p. So, per entry, /N:
    n, c = x.shape
    tol = 8 * unit(x.dtype) * ((c + 2) + 2 * max(1., x.abs().max().item())) / n
    close(cross_entropy_grad(x, y), z.grad, tol, 'cross_entropy_grad')
    close(cross_entropy_grad(x, y).sum(-1), torch.zeros(n, dtype=x.dtype), 8 * (c + 2) * unit(x.dtype) / n, 'rows sum to 0')

@given(st.integers(2, 12), st.sampled_from(INT_DTYPES), st.integers(0, 10_000))
def test_uint8_and_small_int_labels_index_as_classes(n, ldtype, seed):
    "N samples of N classes, no label 0: a uint8 label would index as a mask (the diagonal); any dtype must mean the class."
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, n, generator=g), torch.randint(1, n, (n,), generator=g)
    want = F.cross_entropy(x, y)
    close(cross_entropy(x, y.to(ldtype)), want, 1e-5, f'cross_entropy with {ldtype} labels')
    close(nll(F.log_softmax(x, -1), y.to(ldtype)), want, 1e-5, f'nll with {ldtype} labels')
    close(cross_entropy_grad(x, y.to(ldtype)), cross_entropy_grad(x, y), 0, f'cross_entropy_grad with {ldtype} labels')

@given(st.integers(1, 8), st.integers(2, 6), st.sampled_from(['float', 'bool', 'column', 'short', 'long', 'onehot']))
def test_bad_targets_are_refused_clearly(n, c, kind):
    "Float, bool, (N, 1), one-hot or wrongly sized targets: a clear error naming the dtype or the shapes, for every loss."
    x, y = torch.randn(n, c), torch.randint(0, c, (n,))
    bad = {'float': (y.float(), TypeError, 'torch.float32'), 'bool': (y > 0, TypeError, 'torch.bool'),
           'column': (y[:, None], ValueError, 'targ.view(-1)'), 'short': (y[:-1], ValueError, f'shape ({n},)'),
           'long': (torch.cat([y, y]), ValueError, f'shape ({n},)'), 'onehot': (F.one_hot(y, c).float(), TypeError, 'argmax')}
    targ, exc, msg = bad[kind]
    for f in (cross_entropy, nll, cross_entropy_grad):
        with pytest.raises(exc, match=None) as e: f(x, targ)
        assert msg in str(e.value), f'{f.__name__}: {e.value}'

# ---------------------------------------------------------------------------------------------------------------
# Accuracy: multiclass, (N, 1), one-hot and binary targets against a direct computation

@st.composite
def scores(draw, c=None):
    n = draw(st.integers(1, 16))
    c = draw(st.integers(2, 6)) if c is None else c
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return torch.randn(n, c, generator=g), g

@given(scores(), st.sampled_from(['index', 'column', 'onehot', 'probs']), st.sampled_from(INT_DTYPES))
def test_multiclass_accuracy_matches_direct(og, layout, ldtype):
    "(N, C) scores with (N,) or (N, 1) indices of any integer dtype, or (N, C) one-hot/probability targets."
    out, g = og
    n, c = out.shape
    y = torch.randint(0, c, (n,), generator=g)
    want = (out.argmax(-1) == y).float().mean()
    targ = {'index': y.to(ldtype), 'column': y[:, None].to(ldtype), 'onehot': F.one_hot(y, c).float(),
            'probs': torch.softmax(F.one_hot(y, c) * 5. + torch.rand(n, c, generator=g), -1)}[layout]
    got = multiclass_accuracy(out, targ)
    assert got.shape == () and torch.equal(got, want), f'{layout}: {got} != {want}'

@given(scores(c=1), st.booleans(), st.booleans(), st.sampled_from(['float', 'long', 'bool', 'uint8']))
def test_binary_accuracy_matches_direct(og, out_column, targ_column, tdtype):
    "One logit per sample, (N,) or (N, 1), with 0/1 targets of either shape and several dtypes: positive above 0."
    out, g = og
    y = torch.rand(len(out), generator=g) < 0.5
    want = ((out[:, 0] > 0) == y).float().mean()
    o = out if out_column else out[:, 0]
    t = {'float': y.float(), 'long': y.long(), 'bool': y, 'uint8': y.to(torch.uint8)}[tdtype]
    t = t[:, None] if targ_column else t
    for f in (multiclass_accuracy, binary_accuracy):
        got = f(o, t)
        assert got.shape == () and torch.equal(got, want), f'{f.__name__}{tuple(o.shape), tuple(t.shape)}: {got} != {want}'

@given(scores(), st.sampled_from(['rows', 'classes', 'column3d', 'regression', 'regression_c', 'float_index']))
def test_accuracy_refuses_what_it_cannot_pair(og, kind):
    "Mismatched shapes, regression targets or float indices: an error naming the shapes (and how to pass a metric), never a number."
    out, g = og
    n, c = out.shape
    cases = {'rows': (out, torch.randint(0, c, (n + 1,)), ValueError, f'({n + 1},)'),
             'classes': (out, torch.zeros(n, c + 1), ValueError, f'({n}, {c + 1})'),
             'column3d': (out, torch.zeros(n, 1, 1, dtype=torch.long), ValueError, f'({n}, 1, 1)'),
             'regression': (out[:, :1], torch.randn(n, 1, generator=g) + 3, ValueError, '0/1 targets'),
             'regression_c': (out, torch.randn(n, c, generator=g) + 3, ValueError, 'one-hot rows or probabilities'),
             'float_index': (out, torch.randint(0, c, (n,)).float(), TypeError, 'integer class indices')}
    o, t, exc, msg = cases[kind]
    with pytest.raises(exc) as e: multiclass_accuracy(o, t)
    assert msg in str(e.value), str(e.value)
    if exc is ValueError: assert 'MetricsCB(' in str(e.value), str(e.value)

# ---------------------------------------------------------------------------------------------------------------
# collate and DataLoader against torch.utils.data.default_collate

def same_batch(ours, theirs, where='batch'):
    "Assert two collated batches are equal: tensors of the same dtype and values, strings, dicts with the same keys; list and tuple alike."
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor), f'{where}: {type(ours).__name__} where default_collate gives a tensor'
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs), f'{where}: {ours!r} != {theirs!r}'
    elif isinstance(theirs, str): assert ours == theirs, where
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), f'{where}: keys {list(ours)} != {list(theirs)}'
        for k in theirs: same_batch(ours[k], theirs[k], f'{where}[{k!r}]')
    else:
        assert len(ours) == len(theirs), f'{where}: {len(ours)} fields != {len(theirs)}'
        for i, (o, t) in enumerate(zip(ours, theirs)): same_batch(o, t, f'{where}[{i}]')

NP_DTYPES = [np.float32, np.float64, np.uint8, np.int16, np.int32, np.int64, np.bool_]

@st.composite
def field(draw, depth=0):
    "A recipe for one field of an item: (kind, details); `make(recipe, i)` builds the field of item i."
    kinds = ['tensor', 'array', 'npscalar', 'int', 'float', 'bool', 'str'] + (['tuple', 'dict'] if depth < 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind in ('tensor', 'array'): return kind, (draw(st.lists(st.integers(1, 3), max_size=2)), draw(st.sampled_from(NP_DTYPES)))
    if kind == 'npscalar': return kind, draw(st.sampled_from(NP_DTYPES))
    if kind == 'tuple': return kind, draw(st.lists(field(depth + 1), min_size=1, max_size=3))
    if kind == 'dict': return kind, draw(st.dictionaries(st.sampled_from('abcde'), field(depth + 1), min_size=1, max_size=3))
    return kind, None

def make(recipe, i:int):
    kind, d = recipe
    if kind == 'array': return np.asarray((np.arange(int(np.prod(d[0])), dtype=np.float64).reshape(d[0]) + i).astype(d[1]))
    if kind == 'tensor': return torch.from_numpy(make(('array', d), i))
    if kind == 'npscalar': return np.array(i % 3, dtype=d)[()]
    if kind == 'int': return i
    if kind == 'float': return 0.5 * i
    if kind == 'bool': return i % 2 == 0
    if kind == 'str': return f'item {i}'
    if kind == 'tuple': return tuple(make(r, i) for r in d)
    return {k: make(r, i) for k, r in d.items()}

@given(st.one_of(st.tuples(st.just('tuple'), st.lists(field(1), min_size=1, max_size=4)), field()), st.integers(1, 6))
def test_collate_matches_default_collate(recipe, n):
    "Tensors, numpy arrays and scalars, Python numbers, strings, tuples and dicts, nested: as default_collate batches them."
    items = [make(recipe, i) for i in range(n)]
    same_batch(collate(items), tud.default_collate(items))

@given(st.integers(1, 40), st.integers(1, 12), st.booleans(), st.sampled_from(['tensor', 'numpy']),
       st.sampled_from([np.uint8, np.int32, np.int64, np.float32]), st.integers(0, 1000))
def test_dataloader_matches_torch(n, bs, drop_last, kind, ydtype, seed):
    "Our DataLoader over a Dataset of tensors or numpy arrays yields PyTorch's batches, short last batch and drop_last included."
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, 3)).astype(np.float32), rng.integers(0, 5, n).astype(ydtype)
    ds = Dataset(x, y) if kind == 'numpy' else Dataset(torch.from_numpy(x), torch.from_numpy(y))
    theirs = list(tud.DataLoader(tud.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=bs, drop_last=drop_last))
    if not theirs:   # drop_last with bs > n: no batches, and both loaders say so
        assert len(DataLoader(ds, bs, drop_last=drop_last)) == 0 and not list(DataLoader(ds, bs, drop_last=drop_last)); return
    ours = list(DataLoader(ds, bs, drop_last=drop_last))
    same_batch(ours, theirs, 'batches')
    same_batch(list(tud.DataLoader(ds, batch_size=bs, drop_last=drop_last, collate_fn=collate)), theirs, 'torch loader, our collate')

@given(st.integers(1, 20), st.integers(1, 8), field(1))
def test_dataloader_of_dict_items_matches_torch(n, bs, recipe):
    "A plain list of dict items (no __getitems__): each batch is a dict of batches, as PyTorch's loader gives."
    items = [{'x': make(recipe, i), 'y': i % 3} for i in range(n)]
    same_batch(list(DataLoader(items, bs)), list(tud.DataLoader(items, batch_size=bs)))

# ---------------------------------------------------------------------------------------------------------------
# The Learner: random small models, losses and callbacks that raise; what a fit leaves behind

class Custom(nn.Module):
    "A model that is not a Sequential: two layers and a skip connection."
    def __init__(self, n_in, n_out):
        super().__init__()
        self.a, self.b, self.skip = nn.Linear(n_in, 8), nn.Linear(8, n_out), nn.Linear(n_in, n_out, bias=False)
    def forward(self, x): return self.b(torch.tanh(self.a(x))) + self.skip(x)

class TinyCNN(nn.Module):
    "A small CNN on 1x6x6 images, flattened as 36 inputs."
    def __init__(self, n_in, n_out):
        super().__init__()
        self.conv, self.lin = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4, n_out)
    def forward(self, x): return self.lin(F.relu(self.conv(x.view(-1, 1, 6, 6))).mean((2, 3)))

MODELS = {'sequential': lambda n_in, n_out: nn.Sequential(nn.Linear(n_in, 8), nn.ReLU(), nn.Linear(8, n_out)),
          'custom': Custom, 'cnn': TinyCNN}

def mae(preds, yb): return (preds - yb).abs().mean()

def task(loss:str, n:int, g:torch.Generator, ldtype):
    "(x, y, n_out, loss_func, metrics for MetricsCB, the metric computed directly) for cross-entropy, BCE with logits, MSE."
    x, c = torch.randn(n, 36, generator=g), 3
    labels = torch.randint(0, c, (n,), generator=g)
    if loss == 'ce':   return x, labels.to(ldtype), c, cross_entropy, {}, lambda p, y: (p.argmax(-1) == y).float().mean()
    if loss == 'bce':  return (x, (labels == 0).float()[:, None], 1, F.binary_cross_entropy_with_logits, {},
                               lambda p, y: ((p > 0) == (y == 1)).float().mean())
    if loss == 'mse_onehot': return x, F.one_hot(labels, c).float(), c, F.mse_loss, {}, lambda p, y: (p.argmax(-1) == y.argmax(-1)).float().mean()
    return x, torch.randn(n, 1, generator=g), 1, F.mse_loss, {'mae': mae, 'half': lambda p, y: 0.5}, mae   # regression

class Raiser(Callback):
    "Raise `exc` at `stage` of training batch `it` of every epoch (`it=None`: never)."
    def __init__(self, exc, stage:str, it:int): self.exc, self.stage, self.it = exc, stage, it
    def __getattr__(self, name):
        if name == getattr(self, 'stage', None): return self._maybe
        raise AttributeError(name)
    def _maybe(self, learn):
        if learn.training and learn.iter == self.it: raise self.exc()

class Boom(Exception): "An error in a callback (its own class, so that no other error passes for it)."

HOOK_DICTS = ('_forward_hooks', '_forward_pre_hooks', '_backward_hooks', '_backward_pre_hooks')
EXCEPTIONS = {'none': None, 'batch': CancelBatchException, 'epoch': CancelEpochException, 'fit': CancelFitException,
              'error': Boom, 'interrupt': KeyboardInterrupt}

def assert_fit_left_nothing(learn:Learner, n_cbs:int):
    "After a fit, however it ended: no hooks, no gradients, no graph, no extra callbacks, grad mode on."
    for name, m in learn.model.named_modules():
        for d in HOOK_DICTS: assert not getattr(m, d), f'{d} left on module {name or "(root)"}: {getattr(m, d)}'
    stale = [n for n, p in learn.model.named_parameters() if p.grad is not None]
    assert not stale, f'gradients left on {stale}'
    for attr in ('loss', 'preds'):
        v = getattr(learn, attr)
        assert not (isinstance(v, torch.Tensor) and v.requires_grad), f'learn.{attr} keeps an autograd graph ({v.grad_fn})'
    assert len(learn.cbs) == n_cbs, f'{len(learn.cbs) - n_cbs} callbacks of the fit left in learn.cbs'
    assert torch.is_grad_enabled(), 'gradients disabled after the fit'
    for cb in learn.cbs:
        if isinstance(cb, MetricsCB):
            kept = [v for v in cb.losses + [x for xs in cb.vals.values() for x in xs] if v.requires_grad]
            assert not kept, f'MetricsCB keeps {len(kept)} values with an autograd graph'
    assert all(isinstance(v, (int, float)) for v in learn.metrics.values()), learn.metrics

@given(model=st.sampled_from(list(MODELS)), loss=st.sampled_from(['ce', 'bce', 'mse_onehot', 'mse_reg']),
       ldtype=st.sampled_from(INT_DTYPES), numpy=st.booleans(), n_train=st.integers(4, 40), n_valid=st.integers(1, 24),
       bs=st.integers(1, 16), epochs=st.integers(1, 2), raise_=st.sampled_from(list(EXCEPTIONS)),
       stage=st.sampled_from(['before_batch', 'after_predict', 'after_loss', 'after_backward', 'after_step']),
       it=st.integers(0, 3), seed=st.integers(0, 2**31 - 1))
def test_learner_fit(model, loss, ldtype, numpy, n_train, n_valid, bs, epochs, raise_, stage, it, seed):
    """Any small model, loss and data (tensors or numpy arrays), with a callback that cancels, fails or interrupts:
    the fit leaves nothing behind, and the reported validation metrics are those of a direct computation."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y, n_out, loss_func, metrics, direct = task(loss, n_train + n_valid, g, ldtype)
    xt, yt, xv, yv = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    as_ds = (lambda a, b: Dataset(a.numpy(), b.numpy())) if numpy else Dataset
    dls = DataLoaders(DataLoader(as_ds(xt, yt), bs, shuffle=True, generator=g), DataLoader(as_ds(xv, yv), bs))
    learn = Learner(MODELS[model](36, n_out), dls, loss_func, lr=0.05, cbs=[ProgressCB(bars=False), MetricsCB(**metrics)])
    n_cbs = len(learn.cbs)
    exc = EXCEPTIONS[raise_]
    try: learn.fit(epochs, cbs=[Raiser(exc, stage, it)] if exc else None)   # the raiser for this fit only
    except (Boom, KeyboardInterrupt) as e: assert raise_ in ('error', 'interrupt'), repr(e)
    assert_fit_left_nothing(learn, n_cbs)
    if raise_ not in ('none', 'batch') or 'valid_loss' not in learn.metrics: return event(f'fit ended by {raise_}')
    event('validation metrics compared')
    preds, targs = learn.get_preds()   # the validation batches again: the same logits, in order
    with torch.no_grad(): full = learn.model(xv)
    # one batch or several: dot products of length <= 36 and means of <= 24 terms round differently, ~60 * 2**-24 relative
    close(preds, full, 1e-5 * (1 + full.abs().max().item()), 'get_preds vs the model on the whole validation set')
    want_loss = float(loss_func(preds, yv))
    close(learn.metrics['valid_loss'], want_loss, 1e-5 * (1 + abs(want_loss)), 'valid_loss')
    name = 'mae' if loss == 'mse_reg' else 'acc'
    want = float(direct(preds, yv))
    close(learn.metrics[f'valid_{name}'], want, 1e-6 * (1 + abs(want)), f'valid_{name}')   # a mean of batch means, reweighted
    if loss == 'mse_reg': assert learn.metrics['valid_half'] == 0.5

@given(st.integers(0, 2**31 - 1), st.sampled_from(['after_backward', 'after_loss', 'after_step', 'before_batch']), st.integers(0, 2))
def test_interrupted_fit_leaves_no_gradients(seed, stage, it):
    "Ctrl-C anywhere in a training batch, even between backward and zero_grad: no gradient survives the fit."
    torch.manual_seed(seed)
    x, y = torch.randn(32, 36), torch.randint(0, 3, (32,))
    learn = Learner(MODELS['sequential'](36, 3), DataLoaders(DataLoader(Dataset(x, y), 8), DataLoader(Dataset(x, y), 8)),
                    cbs=[ProgressCB(bars=False)])
    n_cbs = len(learn.cbs)
    with pytest.raises(KeyboardInterrupt): learn.fit(2, cbs=[Raiser(KeyboardInterrupt, stage, it)])
    assert_fit_left_nothing(learn, n_cbs)
    assert learn.fit(1) is None and 'valid_acc' in learn.metrics   # and it trains again

@given(st.integers(0, 2**31 - 1), st.integers(1, 3))
def test_default_metric_refuses_regression_before_any_step(seed, n_out):
    "MSE regression with the default accuracy: a clear error at the first batch, before the weights change."
    torch.manual_seed(seed)
    x, y = torch.randn(16, 36), torch.randn(16, n_out) * 3
    model = MODELS['sequential'](36, n_out)
    w0 = [p.detach().clone() for p in model.parameters()]
    learn = Learner(model, DataLoaders(DataLoader(Dataset(x, y), 8), DataLoader(Dataset(x, y), 8)), F.mse_loss,
                    cbs=[ProgressCB(bars=False)])
    with pytest.raises((ValueError, TypeError)) as e: learn.fit(1)
    assert 'MetricsCB(' in str(e.value) or 'integer class indices' in str(e.value), str(e.value)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), w0)), 'the weights changed before the error'
    assert_fit_left_nothing(learn, len(learn.cbs))

# ---------------------------------------------------------------------------------------------------------------
# Issue 23, one test per case (each failed before the fix)

def tiny_learner(n=32, bs=8, **kw):
    torch.manual_seed(0)
    x, y = torch.randn(n, 36), torch.randint(0, 3, (n,))
    dls = DataLoaders(DataLoader(Dataset(x, y), bs), DataLoader(Dataset(x, y), bs))
    return Learner(MODELS['sequential'](36, 3), dls, cbs=[ProgressCB(bars=False)], **kw)

def test_mnist_uint8_labels_give_the_right_loss():
    "read_idx gives uint8 labels: the loss is the int64 loss (it was 1.5809 against 1.4787, or a crash)."
    x, y = torch.randn(10, 10, generator=torch.Generator().manual_seed(1)), torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    assert torch.equal(cross_entropy(x, y.to(torch.uint8)), cross_entropy(x, y))
    close(cross_entropy(x, y.to(torch.uint8)), F.cross_entropy(x, y), 1e-6)

def test_binary_learner_reports_true_accuracy():
    "A one-logit classifier with (N, 1) targets: the default accuracy is the true one, not the share of negatives."
    torch.manual_seed(0)
    x = torch.randn(200, 36); y = (x[:, :1] > 0.5).float()       # about 30% positives
    learn = Learner(MODELS['sequential'](36, 1), DataLoaders(DataLoader(Dataset(x, y), 32), DataLoader(Dataset(x, y), 50)),
                    F.binary_cross_entropy_with_logits, lr=0.5, cbs=[ProgressCB(bars=False)])
    learn.fit(3)
    preds, _ = learn.get_preds()
    close(learn.metrics['valid_acc'], ((preds > 0) == (y == 1)).float().mean(), 1e-6, 'binary accuracy')
    assert learn.metrics['valid_acc'] != pytest.approx(float((y == 0).float().mean()), abs=1e-6)

def test_numpy_data_trains():
    "Dataset of numpy arrays (float32 images, uint8 labels): tensors come out, and the Learner trains."
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 36)).astype(np.float32), rng.integers(0, 3, 64).astype(np.uint8)
    xb, yb = next(iter(DataLoader(Dataset(x, y), 16)))
    assert isinstance(xb, torch.Tensor) and isinstance(yb, torch.Tensor) and yb.dtype == torch.uint8
    items = [{'x': x[i], 'y': y[i]} for i in range(4)]
    same_batch(collate(items), tud.default_collate(items))
    learn = Learner(MODELS['sequential'](36, 3), DataLoaders(DataLoader(Dataset(x, y), 16), DataLoader(Dataset(x, y), 16)),
                    cross_entropy, cbs=[ProgressCB(bars=False)])
    learn.fit(1)
    assert math.isfinite(learn.metrics['valid_loss'])

def test_differentiable_metric_is_stored_detached():
    "MetricsCB(ce=F.cross_entropy): every stored value is detached (it kept each batch's graph), and a number works too."
    learn = tiny_learner()
    mcb = MetricsCB(ce=F.cross_entropy, one=lambda p, y: 1)
    learn.fit(1, cbs=[mcb])
    assert not any(v.requires_grad for v in mcb.vals['ce'] + mcb.vals['one'])
    close(learn.metrics['valid_ce'], learn.metrics['valid_loss'], 1e-6)
    assert learn.metrics['train_one'] == learn.metrics['valid_one'] == 1.

def test_lr_find_without_batches():
    "lr_find when no batch runs: a clear error (it was `min() arg is an empty sequence`)."
    learn = tiny_learner(n=4, bs=8)
    learn.dls.train = DataLoader(learn.dls.train.ds, 8, drop_last=True)   # 4 items, batches of 8, drop_last: none
    with pytest.raises(ValueError, match='no batches'): learn.lr_find(plot=False)
    with pytest.raises(ValueError, match='no training batch'): LRFinderCB().suggest()
    with pytest.raises(ValueError, match='start_lr'): LRFinderCB(start_lr=1., max_lr=0.1)

def test_lr_find_restores_metrics():
    "lr_find leaves `learn.metrics` as it was (the finder's training-only epochs used to stay)."
    learn = tiny_learner()
    learn.fit(1)
    before = dict(learn.metrics)
    learn.lr_find(plot=False)
    assert learn.metrics == before

def test_recorder_losses_before_fit():
    assert RecorderCB().losses == [] and RecorderCB().lrs == []

def test_get_preds_without_batches():
    learn = tiny_learner()
    with pytest.raises(ValueError, match='no batches'): learn.get_preds(dl=[])
    learn.dls.valid = None
    with pytest.raises(ValueError, match='no validation DataLoader'): learn.get_preds()

def test_dataloaders_without_validation():
    "DataLoaders(train, None): the Learner trains and skips the validation pass; a non-loader is refused up front."
    learn = tiny_learner()
    learn.dls = DataLoaders(learn.dls.train, None)
    learn.fit(1)
    assert 'train_loss' in learn.metrics and 'valid_loss' not in learn.metrics
    with pytest.raises(TypeError, match='train should be an iterable'): DataLoaders(None, None)
    with pytest.raises(TypeError, match='valid should be an iterable'): DataLoaders(learn.dls.train, 3)

def test_callback_classes_are_made():
    "cbs=[ProgressCB]: the class is made with its defaults, as the defaults are; a non-callback is refused clearly."
    learn = tiny_learner()
    learn2 = Learner(learn.model, learn.dls, cbs=[ProgressCB])
    assert sum(isinstance(cb, ProgressCB) for cb in learn2.cbs) == 1 and not any(isinstance(cb, type) for cb in learn2.cbs)
    learn.fit(1, cbs=[RecorderCB])
    with pytest.raises(TypeError, match='Callback instances'): Learner(learn.model, learn.dls, cbs=[print])

def test_fit_epochs_any_integer():
    "fit(np.int64(1)) trains one epoch; floats and negatives are refused before anything runs."
    learn = tiny_learner()
    learn.fit(np.int64(1))
    assert learn.metrics['epoch'] == 0
    for bad, exc in ((1.5, TypeError), (-1, ValueError), (True, TypeError)):
        with pytest.raises(exc, match='epochs'): learn.fit(bad)
    x, y = torch.randn(8, 36), torch.randint(0, 3, (8,))
    dl = DataLoader(Dataset(x, y), 4)
    assert len(fit(np.int64(1), learn.model, cross_entropy, SGD(learn.model.parameters()), dl, dl, verbose=False)) == 2
