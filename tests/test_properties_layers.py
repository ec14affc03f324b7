"""Property-based tests (hypothesis) of the layers and the model probes: `mlfound.norm` and `mlfound.init` used as a library.

- `BatchNorm` and `LayerNorm` on 1- to 4-D inputs, in training and eval mode, float32 and float64, against
  `nn.BatchNorm1d`/`nn.BatchNorm2d`, `F.batch_norm`, `nn.LayerNorm` and `F.layer_norm`: outputs, running statistics
  after several steps (every momentum, `None` included), gradients by autograd; and the errors for bad shapes.
- `ActivationStats` and `Hooks` on random small models trained by `Learner` for a batch or three: a `Sequential`, a
  custom module that uses a block twice, runs a module on some batches only, returns a tuple from a module and keeps
  a BatchNorm in eval mode, and a tiny CNN. The recorded statistics equal a direct computation from every output of
  every watched module (kept by plain PyTorch hooks), and no hook is left on any module after `fit`, also when a
  callback raises at any stage.
- Below them, one example test for each crash of issue 23 that belongs to `mlfound.init` and `mlfound.norm`, and for the
  others found on the way (each failed before the fix).

The profile comes from tests/conftest.py: `ci` (25 examples per property, derandomized) unless `HYPOTHESIS_PROFILE=dev`.
"""
from __future__ import annotations
import math, warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import given, strategies as st

from mlfound.init import (ActivationStats, GeneralRelu, Hook, Hooks, dead_fraction, init_weights, lsuv_init,
                          record_stats, relu_floor)
from mlfound.learner import Callback, Learner, TrainCB
from mlfound.norm import BatchNorm, LayerNorm, OneCycleCB, ShiftCB, one_cycle
from mlfound.training import Dataset, get_dls

from conftest import close, unit

FLOAT_DTYPES = [torch.float32, torch.float64]

def n_hooks(model:nn.Module) -> int:
    "Forward hooks (and pre-hooks) left on any module of `model`."
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

# ---------------------------------------------------------------------------------------------------------------
# Normalisation layers against PyTorch

@st.composite
def norm_inputs(draw, min_ndim=2):
    "A batch (N, nf, *spatial) of a float dtype: each feature its own scale (1e-2 to 1e2) and an offset of up to 10 stds."
    ndim, dtype = draw(st.integers(min_ndim, 4)), draw(st.sampled_from(FLOAT_DTYPES))
    nf, n = draw(st.integers(1, 6)), draw(st.integers(2, 6))
    spatial = [draw(st.integers(1, 4)) for _ in range(ndim - 2)]
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return (n, nf, *spatial), dtype, g

def draw_x(shape, dtype, g, feat_axis=1):
    "x = scale * (z + offset) per feature, z ~ N(0, 1): |offset| <= 10 keeps the normalisation's conditioning at most ~15."
    nf = shape[feat_axis]
    view = [1] * len(shape); view[feat_axis] = nf
    scale = 10 ** (torch.rand(nf, generator=g, dtype=torch.float64) * 4 - 2)
    offset = torch.rand(nf, generator=g, dtype=torch.float64) * 20 - 10
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    return (scale.view(view) * (z + offset.view(view))).to(dtype)

def norm_tol(x:torch.Tensor, ref:torch.Tensor, n:int, axes) -> float:
    """A bound on |ours - torch| for a normalisation of `x` whose statistics sum `n` values, for results like `ref`.
    The mean and variance of n values carry a relative error of at most ~n*u each (u the unit roundoff); x - mean then
    has an absolute error ~n*u*max|x| (cancellation), which the division by sqrt(var + eps) turns into a relative
    n*u*cond, the 'conditioning' cond = max|x| / sqrt(var + eps) (<= ~15 with our offsets, unless a feature barely
    varies: then eps, 1e-5, sets the scale). Outputs and gradients scale like max|ref|. Both sides carry such an error:
    times 2, and 4 for the few operations around the sums."""
    cond = 1 + (x.abs().amax(axes) / (x.var(axes, correction=0) + 1e-5).sqrt()).max().item() if x.numel() else 1
    return 8 * n * unit(x.dtype) * cond * max(1., ref.abs().max().item())

def grad_tols(x, g_out, weight, feat_axis, stat_axes, n):
    """Tolerances for d x, d weight and d bias of a normalisation of `x` (statistics of `n` values over `stat_axes`).
    x_hat carries an absolute error e = n*u*cond (see norm_tol), and a sum of k terms adds ~k*u of the sum of their
    sizes (not of the result's size: d x cancels to ~0). So, with the sums over the other `rows` positions:
    d bias = sum g: rows*u*sum|g|; d weight = sum g*x_hat: e*sum|g| + rows*u*sum|g*x_hat|;
    d x = w/s * (g - mean g - x_hat * mean(g*x_hat)): (e + n*u) * w/s * (|g| + mean|g| * (1 + |x_hat|) + |x_hat| * mean|g*x_hat|).
    Times 8, as in norm_tol. Computed in float64."""
    x, g = x.double(), g_out.double()
    u = unit(g_out.dtype)
    var, mean = torch.var_mean(x, stat_axes, correction=0, keepdim=True)
    s = (var + 1e-5).sqrt()
    xh = ((x - mean) / s).abs()
    w = weight.detach().double().abs().view([-1 if i == feat_axis % x.ndim else 1 for i in range(x.ndim)])
    sum_axes = [i for i in range(x.ndim) if i != feat_axis % x.ndim]
    rows = x.numel() // x.shape[feat_axis]
    cond = 1 + (x.abs().amax(stat_axes) / (x.var(stat_axes, correction=0) + 1e-5).sqrt()).max().item()
    e, ga = n * u * cond, g.abs()
    db = rows * u * ga.sum(sum_axes).max().item()
    dw = (e * ga.sum(sum_axes) + rows * u * (ga * xh).sum(sum_axes)).max().item()
    m = lambda t: t.mean(stat_axes, keepdim=True)
    dx = ((e + n * u) * w / s * (ga + m(ga) * (1 + xh) + xh * m(ga * xh))).max().item()
    return [8 * dx, 8 * dw, 8 * db]

def torch_bn(nf, ndim, **kwargs):
    "PyTorch's BatchNorm for an input of `ndim` dimensions (2-D and 3-D: BatchNorm1d, 4-D: BatchNorm2d)."
    return (nn.BatchNorm1d if ndim <= 3 else nn.BatchNorm2d)(nf, **kwargs)

def bn_pair(nf, ndim, mom, dtype, g):
    "Ours and PyTorch's BatchNorm, with the same random scale and shift, in `dtype`."
    ours = BatchNorm(nf, mom=mom).to(dtype)
    with torch.no_grad():
        ours.weight.copy_(torch.rand(nf, generator=g, dtype=torch.float64) + 0.5)
        ours.bias.copy_(torch.randn(nf, generator=g, dtype=torch.float64))
    ref = torch_bn(nf, ndim, momentum=mom).to(dtype)
    ref.load_state_dict(ours.state_dict())          # the same parameter and buffer names, both ways
    return ours, ref

def out_grads(m, x, g_out):
    "The output `m(x)`, then the gradients of `(m(x) * g_out).sum()` with respect to x, m.weight and m.bias."
    x = x.clone().requires_grad_()
    m.zero_grad()
    out = m(x)
    out.backward(g_out)
    return out.detach(), x.grad, m.weight.grad, m.bias.grad

@given(norm_inputs(), st.sampled_from([0.1, 0.5, 1.0, 0.0, None]), st.integers(1, 3))
def test_batchnorm_matches_torch(inp, mom, steps):
    "Training steps: outputs, gradients and running statistics as PyTorch's; then eval outputs as nn.BatchNorm and F.batch_norm."
    shape, dtype, g = inp
    nf, ndim = shape[1], len(shape)
    axes = [0, *range(2, ndim)]
    ours, ref = bn_pair(nf, ndim, mom, dtype, g)
    for step in range(steps):
        bs = shape[0] if step == 0 else 2 + step        # batches of other sizes after the first
        x = draw_x((bs, *shape[1:]), dtype, g)
        n = x.numel() // nf
        g_out = torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype)
        got, want = out_grads(ours, x, g_out), out_grads(ref, x, g_out)
        tol = norm_tol(x, want[0], n, axes)
        close(got[0], want[0], tol, f'output, step {step}')
        for name, a, b, t in zip(('d x', 'd weight', 'd bias'), got[1:], want[1:], grad_tols(x, g_out, ours.weight, 1, axes, n)):
            close(a, b, t, f'{name}, step {step}')
    assert ours.num_batches_tracked.item() == ref.num_batches_tracked.item() == steps
    # running averages: a few lerps of statistics that are each within ~n*u*cond of the truth
    close(ours.running_mean, ref.running_mean, norm_tol(x, ref.running_mean, n, axes), 'running_mean')
    close(ours.running_var, ref.running_var, norm_tol(x, ref.running_var, n, axes) * 2, 'running_var')
    ref.load_state_dict(ours.state_dict())              # eval from the same running statistics: only the eval arithmetic differs
    ours.eval(); ref.eval()
    x = draw_x((1, *shape[1:]), dtype, g)                # a batch of one is fine in eval mode
    want = ref(x)
    # eval: a few roundings of terms as large as |w| (|x| + |running_mean|) / sqrt(running_var + eps), |bias| and |out|
    # (PyTorch folds it into x * scale + shift, we compute (x - mean) / sqrt(...) * w + b: the same terms, other order)
    w_, b_, rm, rs = ours.weight.detach().abs(), ours.bias.detach().abs(), ours.running_mean.abs(), (ours.running_var + ours.eps).sqrt()
    terms = w_ * (x.abs().amax([0, *range(2, x.ndim)]) + rm) / rs + b_
    eval_tol = 8 * unit(dtype) * (terms.max().item() + want.abs().max().item())
    close(ours(x).detach(), want.detach(), eval_tol, 'eval output')
    functional = F.batch_norm(x, ref.running_mean, ref.running_var, ref.weight, ref.bias, training=False, eps=ref.eps)
    close(ours(x).detach(), functional.detach(), eval_tol, 'eval output vs F.batch_norm')

@given(st.lists(st.integers(1, 4), min_size=0, max_size=3), st.integers(1, 7), st.sampled_from(FLOAT_DTYPES), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_layernorm_matches_torch(batch, nf, dtype, train, seed):
    "Over the last axis, for 1- to 4-D inputs, in either mode: outputs and gradients as nn.LayerNorm and F.layer_norm."
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, nf)
    ours = LayerNorm(nf).to(dtype).train(train)
    with torch.no_grad():
        ours.weight.copy_(torch.rand(nf, generator=g, dtype=torch.float64) + 0.5)
        ours.bias.copy_(torch.randn(nf, generator=g, dtype=torch.float64))
    ref = nn.LayerNorm(nf).to(dtype).train(train)
    ref.load_state_dict(ours.state_dict())
    x = draw_x(shape, dtype, g, feat_axis=len(shape) - 1)
    g_out = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    got, want = out_grads(ours, x, g_out), out_grads(ref, x, g_out)
    tol = norm_tol(x, want[0], nf, -1)     # nf = 1: constant samples, where x - mean is rounding over sqrt(eps)
    close(got[0], want[0], tol, 'output')
    close(got[0], F.layer_norm(x, (nf,), ref.weight, ref.bias, ref.eps).detach(), tol, 'output vs F.layer_norm')
    for name, a, b, t in zip(('d x', 'd weight', 'd bias'), got[1:], want[1:], grad_tols(x, g_out, ours.weight, -1, -1, nf)):
        close(a, b, t, name)

@given(st.integers(1, 6), st.lists(st.integers(1, 5), min_size=0, max_size=4))
def test_norm_bad_shapes(nf, shape):
    "A shape that does not put `nf` features on the expected axis is refused before any work, naming the shape and nf."
    bn, ln = BatchNorm(nf), LayerNorm(nf)
    x = torch.zeros(shape)
    if len(shape) < 2 or shape[1] != nf:
        with pytest.raises(ValueError) as e: bn(x)
        assert str(tuple(shape)) in str(e.value) and f'(N, {nf})' in str(e.value), e.value
        assert bn.num_batches_tracked.item() == 0 and (bn.running_var == 1).all()   # nothing was updated
    if len(shape) < 1 or shape[-1] != nf:
        with pytest.raises(ValueError) as e: ln(x)
        assert str(tuple(shape)) in str(e.value) and f'(..., {nf})' in str(e.value), e.value
    for m in (bn, ln):
        with pytest.raises(TypeError, match='floating-point'): m(torch.zeros(2, nf, dtype=torch.long))

# ---------------------------------------------------------------------------------------------------------------
# ActivationStats and Hooks on random small models, against a direct computation

class Pair(nn.Module):
    "Returns a tuple, as nn.LSTM does: a linear layer's output and its input."
    def __init__(self, n): super().__init__(); self.lin = nn.Linear(n, n)
    def forward(self, x): return self.lin(x), x

class Odd(nn.Module):
    "A block used `reps` times, a module run on the training batches where `every` divides the count, a tuple, a frozen BatchNorm."
    def __init__(self, n_in, nh, reps, every):
        super().__init__()
        self.first, self.block = nn.Linear(n_in, nh), nn.Sequential(nn.Linear(nh, nh), GeneralRelu(leak=0.1, sub=0.4))
        self.sometimes, self.pair, self.frozen, self.head = nn.Linear(nh, nh), Pair(nh), nn.BatchNorm1d(nh), nn.Linear(nh, 3)
        self.reps, self.every, self.n = reps, every, 0
    def train(self, mode=True):
        super().train(mode); self.frozen.eval(); return self
    def forward(self, x):
        x = self.first(x)
        for _ in range(self.reps): x = self.block(x)
        if self.training:
            self.n += 1
            if self.n % self.every == 0: x = self.sometimes(x)
        return self.head(self.frozen(self.pair(x)[0]))

def make_model(kind, n_in, nh, reps, every):
    if kind == 'sequential': return nn.Sequential(nn.Linear(n_in, nh), nn.ReLU(), nn.Linear(nh, nh), nn.LeakyReLU(0.1), nn.Linear(nh, 3))
    if kind == 'odd': return Odd(n_in, nh, reps, every)
    side = math.isqrt(n_in)                             # 'cnn': the inputs are square images
    return nn.Sequential(nn.Unflatten(1, (1, side, side)), nn.Conv2d(1, nh, 3, padding=1), GeneralRelu(sub=0.2),
                         nn.Conv2d(nh, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * ((side + 1) // 2)**2, 3))

class Collect(Callback):
    "Every output of each watched module on each training batch, from `before_batch` to `after_predict`, by plain torch hooks."
    def __init__(self, modules): self.modules, self.on = modules, False
    def before_fit(self, learn):
        self.outs = [[] for _ in self.modules]
        self.handles = [m.register_forward_hook(lambda mod, inp, out, i=i: self._keep(i, out)) for i, m in enumerate(self.modules)]
    def before_batch(self, learn):
        self.on = learn.training
        if self.on:
            for o in self.outs: o.append([])
    def after_predict(self, learn): self.on = False
    def _keep(self, i, out):
        if self.on: self.outs[i][-1].append((out[0] if isinstance(out, tuple) else out).detach().clone())
    def cleanup_fit(self, learn):
        for h in self.handles: h.remove()

def direct_stats(outs, floor, bins, hmax, near):
    "mean, std, near-zero fraction, dead fraction and histogram of all the outputs of one module on one batch, in float64."
    if not outs: return [math.nan] * 4 + [torch.zeros(bins, dtype=torch.float64)]
    a = torch.cat([o.flatten() for o in outs]).double()
    same = all(o.shape[1:] == outs[0].shape[1:] for o in outs) and outs[0].ndim >= 2
    dead = (torch.cat([(o.float() <= floor) for o in outs]).flatten(1).all(0).double().mean().item()
            if floor is not None and same else math.nan)
    hist = torch.histc(a.abs().clamp_max(hmax), bins, 0, hmax)
    return [a.mean().item(), a.std().item() if a.numel() > 1 else math.nan, (a.abs() < near).double().mean().item(), dead, hist]

def same_with_nans(got, want, tol, what):
    got, want = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(want, dtype=torch.float64)
    assert torch.equal(got.isnan(), want.isnan()), f'{what}: NaN in different places\n{got}\n{want}'
    close(got[~got.isnan()], want[~want.isnan()], tol, what)

@st.composite
def small_fits(draw):
    "A random small model, its data, the modules to watch and the number of epochs."
    kind = draw(st.sampled_from(['sequential', 'odd', 'cnn']))
    side = draw(st.integers(3, 5))
    n_in = side * side
    nh, reps, every = draw(st.integers(2, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n, bs, epochs = draw(st.integers(4, 12)), draw(st.integers(2, 5)), draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**31 - 1))
    torch.manual_seed(seed)
    model = make_model(kind, n_in, nh, reps, every)
    kids = list(model.children())
    watch = draw(st.one_of(st.none(), st.lists(st.sampled_from(range(len(kids))), min_size=1, max_size=3, unique=True)))
    modules = None if watch is None else [kids[i] for i in watch]
    x, y = torch.randn(n, n_in) * 2, torch.randint(0, 3, (n,))
    return model, modules, x, y, bs, epochs, seed

@given(small_fits(), st.integers(4, 20), st.sampled_from([0.5, 1., 5.]))
def test_activation_stats_direct(fit_args, bins, hmax):
    "Every statistic of every watched module at every training batch equals the one computed from its outputs; no hook left."
    model, modules, x, y, bs, epochs, seed = fit_args
    torch.manual_seed(seed)
    dls = get_dls(Dataset(x, y), Dataset(x, y), bs=bs)
    stats = ActivationStats(modules, bins=bins, hmax=hmax)
    watched = modules if modules is not None else list(model.children())
    col = Collect(watched)
    floors = [relu_floor(m) for m in watched]
    Learner(model, dls, F.cross_entropy, lr=0.05, cbs=[TrainCB(), stats, col], defaults=False).fit(epochs)
    assert n_hooks(model) == 0
    n_batches = epochs * len(dls.train)
    assert stats.calls.shape == (len(watched), n_batches)
    assert stats.calls.tolist() == [[len(b) for b in o] for o in col.outs]
    for i, (outs, floor) in enumerate(zip(col.outs, floors)):
        want = [direct_stats(b, floor, bins, hmax, stats.near) for b in outs]
        size = max((o.abs().max().item() for b in outs for o in b), default=1.)
        n_vals = max((sum(o.numel() for o in b) for b in outs), default=1)
        # float32 sums of n_vals values of size <= `size`: error <= n_vals * 2**-24 * size (worst case), times 4
        tol = 4 * n_vals * unit(torch.float32) * max(1., size)
        same_with_nans(stats.means[i], [w[0] for w in want], tol, f'means of module {i}')
        same_with_nans(stats.stds[i], [w[1] for w in want], tol * 4, f'stds of module {i}')
        same_with_nans(stats.near_zero[i], [w[2] for w in want], 1e-6, f'near_zero of module {i}')
        same_with_nans(stats.dead[i], [w[3] for w in want], 1e-6, f'dead of module {i}')
        hists = torch.stack([w[4] for w in want])
        assert stats.hists[i].shape == hists.shape
        # histc of the float32 values and of their float64 copies may put a value that lies on a bucket edge apart
        assert (stats.hists[i].double() - hists).abs().sum(-1).max() <= 2 * 2, (stats.hists[i], hists)
        assert torch.equal(stats.hists[i].sum(-1).double(), hists.sum(-1))   # every value counted once

STAGES = ['before_fit', 'before_epoch', 'before_batch', 'after_predict', 'after_loss', 'after_step', 'after_batch', 'after_epoch', 'after_fit']

class Boom(Callback):
    "Raise `exc` at `stage` of training batch `at` (or the first time `stage` comes, for the stages outside batches)."
    def __init__(self, stage, at, exc, order):
        self.stage, self.at, self.exc, self.order = stage, at, exc, order
        setattr(self, stage, self._maybe)
    def _maybe(self, learn):
        if 'batch' in self.stage or self.stage in ('after_predict', 'after_loss', 'after_step'):
            if not (learn.training and learn.iter == self.at): return
        raise self.exc

@given(small_fits(), st.sampled_from(STAGES), st.integers(0, 2), st.sampled_from([-20, 0, 20]),
       st.sampled_from([RuntimeError, KeyboardInterrupt]))
def test_no_hooks_left_when_a_callback_raises(fit_args, stage, at, order, exc_cls):
    "Whatever stage a callback raises at, and whatever its order, fit re-raises it and leaves no hook; what was recorded is consistent."
    model, modules, x, y, bs, epochs, seed = fit_args
    dls = get_dls(Dataset(x, y), Dataset(x, y), bs=bs)
    stats = ActivationStats(modules)
    exc = exc_cls('boom')
    boom = Boom(stage, at % len(dls.train), exc, order)        # a batch that exists
    with pytest.raises(exc_cls) as e:
        Learner(model, dls, F.cross_entropy, lr=0.05, cbs=[TrainCB(), boom, stats], defaults=False).fit(epochs)
    assert e.value is exc
    assert n_hooks(model) == 0
    with Hooks(model.modules(), record_stats):      # Hooks too, when the body raises
        assert n_hooks(model) == len(list(model.modules()))
    assert n_hooks(model) == 0
    try: calls = stats.calls
    except ValueError: return                       # it raised before the first training batch was recorded
    for attr in ('means', 'stds', 'near_zero', 'dead'):
        assert getattr(stats, attr).shape == calls.shape
    assert stats.hists.shape == (*calls.shape, stats.bins)
    ran = calls > 0
    assert not stats.means[ran].isnan().any() and stats.means[~ran].isnan().all()

@given(st.lists(st.sampled_from(['linear', 'relu', 'seq', 'lstm']), min_size=1, max_size=4), st.booleans())
def test_hooks_never_change_outputs(kinds, raise_inside):
    "A Hooks whose function returns a value leaves every output unchanged; every hook is gone after the block, raised or not."
    torch.manual_seed(0)
    mods = [{'linear': lambda: nn.Linear(3, 3), 'relu': nn.ReLU, 'seq': lambda: nn.Sequential(nn.Linear(3, 3), nn.Tanh()),
             'lstm': lambda: nn.LSTM(3, 3, batch_first=True)}[k]() for k in kinds]
    x = torch.randn(2, 4, 3)
    want = [m(x) for m in mods]
    def replace(hook, mod, inp, out): hook.seen = True; return torch.zeros(1)   # as a torch hook, this would replace `out`
    try:
        with Hooks(mods, replace) as hs:
            got = [m(x) for m in mods]
            assert all(getattr(h, 'seen', False) for h in hs)
            if raise_inside: raise RuntimeError('boom')
    except RuntimeError: assert raise_inside
    for g, w in zip(got, want):
        g, w = (g[0], w[0]) if isinstance(g, tuple) else (g, w)
        assert torch.equal(g, w)
    assert sum(n_hooks(m) for m in mods) == 0

@given(st.integers(1, 200), st.floats(1e-4, 10), st.floats(0, 0.9), st.floats(1, 100), st.integers(1, 3))
def test_one_cycle_schedule(n_batches, lr_max, pct, div, extra):
    "OneCycleCB follows one_cycle batch by batch, counts the batches itself when not told, and warns when a fit runs past them."
    lrs = [one_cycle(min(i / n_batches, 1), lr_max, pct, div) for i in range(n_batches + extra)]
    assert all(0 <= lr <= lr_max * (1 + 1e-12) for lr in lrs)
    assert lrs[0] == pytest.approx(lr_max / div if pct > 0 else lr_max) and lrs[n_batches] == pytest.approx(0, abs=1e-12 * lr_max)

    class FakeLearn: epochs, training, opt = 1, True, None
    learn = FakeLearn()
    learn.dls = type('D', (), {'train': range(n_batches)})()
    learn.opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.)
    cb = OneCycleCB(lr_max, None, pct, div)
    cb.before_fit(learn)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        for _ in range(n_batches + extra): cb.before_batch(learn)
    assert cb.total == n_batches and cb.lrs == pytest.approx(lrs)
    assert len([w for w in ws if 'more than n_batches' in str(w.message)]) == 1

@given(st.sampled_from(['flat', 'hw', 'chw']), st.integers(3, 9), st.integers(3, 9), st.integers(0, 3), st.integers(0, 2**31 - 1))
def test_shift_keeps_every_pixel_or_fills(layout, h, w, k, seed):
    "ShiftCB moves each image (every channel alike) by at most k pixels, keeps its shape, and fills only what it shifted in."
    if layout == 'flat': w = h
    c = 3 if layout == 'chw' else 1
    n = 4
    imgs = torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w) + 1   # every pixel distinct and > 0
    xb = imgs.view(n, h * w) if layout == 'flat' else imgs.view(n, h, w) if layout == 'hw' else imgs
    learn = type('L', (), {'training': True, 'batch': (xb, torch.zeros(n))})()
    torch.manual_seed(seed)
    ShiftCB(k, fill=0.).before_batch(learn)
    out = learn.batch[0]
    assert out.shape == xb.shape
    out = out.reshape(n, c, h, w)
    for i in range(n):
        ok = False
        for dy in range(2 * k + 1):
            for dx in range(2 * k + 1):
                ref = F.pad(imgs[i], (k, k, k, k))[:, dy:dy + h, dx:dx + w]
                ok = ok or torch.equal(out[i], ref)
        assert ok, f'image {i} is not a shift of at most {k} pixels of its original'

# ---------------------------------------------------------------------------------------------------------------
# One example per case of issue 23 in mlfound.init and mlfound.norm, and the others found on the way

def tiny_fit(model, cbs, n=16, n_in=8, bs=4, epochs=1):
    torch.manual_seed(0)
    x, y = torch.randn(n, n_in), torch.randint(0, 3, (n,))
    Learner(model, get_dls(Dataset(x, y), Dataset(x, y), bs=bs), F.cross_entropy, lr=0.1, cbs=[TrainCB(), *cbs],
            defaults=False).fit(epochs)

def test_issue23_activation_stats_on_sequential_with_relu():
    "'Hook' object has no attribute 'floor': relu_floor ran the hooked nn.ReLU in before_fit."
    model, stats = nn.Sequential(nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3)), ActivationStats()
    tiny_fit(model, [stats])
    assert stats.means.shape == (3, 4) and not stats.dead[1].isnan().any() and stats.dead[2].isnan().all()
    assert n_hooks(model) == 0

@pytest.mark.parametrize('reps,every', [(2, 1), (1, 2), (1, 1)])
def test_issue23_block_twice_some_batches_eval_tuple(reps, every):
    "A block used twice, a module on some batches only, a BatchNorm in eval mode, a tuple output: once a torch.stack error."
    model, stats = Odd(8, 4, reps, every), ActivationStats()
    tiny_fit(model, [stats])
    names = [n for n, _ in model.named_children()]
    calls = dict(zip(names, stats.calls.tolist()))
    assert calls['block'] == [reps] * 4 and calls['frozen'] == [1] * 4 and calls['pair'] == [1] * 4
    assert calls['sometimes'] == [int((b + 1) % every == 0) for b in range(4)]
    assert stats.means[names.index('sometimes')].isnan().tolist() == [c == 0 for c in calls['sometimes']]

def test_issue23_tuple_without_tensor_is_a_clear_error():
    class Names(nn.Module):
        def forward(self, x): return ('a', 'b')
    class M(nn.Module):
        def __init__(self): super().__init__(); self.names, self.lin = Names(), nn.Linear(8, 3)
        def forward(self, x): self.names(x); return self.lin(x)
    model = M()
    with pytest.raises(TypeError, match='Names returned tuple with no tensor in it'): tiny_fit(model, [ActivationStats()])
    assert n_hooks(model) == 0

def test_issue23_onecycle_bad_arguments():
    with pytest.raises(ValueError, match='n_batches'): OneCycleCB(0.1, 0)
    with pytest.raises(ValueError, match='lr_max'): OneCycleCB(-0.1, 10)
    with pytest.raises(ValueError, match='pct'): OneCycleCB(0.1, 10, pct=1.)
    with pytest.raises(ValueError, match='div'): OneCycleCB(0.1, 10, div=0)

def test_issue23_batchnorm_mom_none_is_a_cumulative_average():
    torch.manual_seed(0)
    ours, ref = BatchNorm(5, mom=None), nn.BatchNorm1d(5, momentum=None)
    xs = [torch.randn(bs, 5) * 3 + 1 for bs in (8, 3, 6)]
    for x in xs: torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_mean, torch.stack([x.mean(0) for x in xs]).mean(0))
    torch.testing.assert_close(ours.running_var, ref.running_var)

def test_found_activation_stats_model_without_children_and_stray_module():
    "A model with no children is watched itself (it recorded nothing before); a module outside the model is refused up front."
    model, stats = nn.Linear(8, 3), ActivationStats()
    tiny_fit(model, [stats])
    assert stats.means.shape == (1, 4)
    model = nn.Sequential(nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r'module 0 \(Linear\) is not part of the model'): tiny_fit(model, [ActivationStats([nn.Linear(2, 2)])])
    assert n_hooks(model) == 0

def test_found_hooks_single_module_and_non_callable():
    lin = nn.Linear(3, 3)
    with Hooks(lin, record_stats) as hs: lin(torch.randn(2, 3))
    assert len(hs) == 1 and isinstance(hs[0].mean, float)
    with pytest.raises(TypeError, match='fn must be callable'): Hook(lin, None)
    assert n_hooks(lin) == 0

def test_found_lsuv_keeps_buffers_and_checks_arguments():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU()), nn.Linear(6, 3))
    before = {k: b.clone() for k, b in model.named_buffers()}
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); lsuv_init(model, model, torch.randn(32, 8))
    for k, b in model.named_buffers(): assert torch.equal(b, before[k]), k
    with pytest.raises(ValueError, match='max_iter'): lsuv_init(model, model, torch.randn(32, 8), max_iter=0)
    with pytest.raises(ValueError, match='tol'): lsuv_init(model, model, torch.randn(32, 8), tol=-1)
    mean, std = lsuv_init(model, model[1], torch.randn(32, 8))[0]      # a single module
    assert abs(mean) < 0.02 and abs(std - 1) < 0.02

def test_found_small_errors():
    with pytest.raises(ValueError, match='floor is None'): dead_fraction(torch.zeros(2, 3), None)
    with pytest.raises(ValueError, match='lazy layer'): init_weights(nn.LazyLinear(3))
    with pytest.raises(ValueError, match='flatten them into the last one'): LayerNorm((3, 4))
    with pytest.raises(TypeError, match='floating-point'): BatchNorm(3)(torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match='a positive integer'): BatchNorm(0)
    with pytest.raises(ValueError, match='k must be an integer'): ShiftCB(-1)
    with pytest.raises(ValueError, match='bins'): ActivationStats(bins=0)
