"""Property-based tests (hypothesis) of `mlfound.conv`: `im2col`, `col2im`, `conv2d`, `conv2d_unfold` and `Conv2d` as a library.

- `im2col` equals `F.unfold` exactly (it copies numbers); `col2im` matches `F.fold` and is im2col's transpose.
- `conv2d` (implicit GEMM on the fast-matmul micro-kernel) and `conv2d_unfold` (explicit im2col and `matmul_goto`)
  against `F.conv2d` in float64, over random batch sizes, channel counts, kernel shapes, strides and paddings, in
  float32 and float64, contiguous inputs or not: the output and the gradients of input, weight and bias.
- `gradcheck` in float64, the clear errors for bad arguments, `Conv2d` <-> `nn.Conv2d` (initialisation and
  `state_dict` both ways), and the kernels with 1 and 2 numba threads (the threads split the images).

Tolerances come from the arithmetic, not from one machine. Every result is a sum of products: an output is a sum of
k = C·kh·kw products plus the bias, a pixel of the input's gradient a sum of at most nf·kh·kw products, a weight's
gradient a sum of N·Ho·Wo products and a bias's gradient a sum of N·Ho·Wo numbers. Computed in any order, in a dtype
with unit roundoff u, such a sum of k terms t_i is within k·u·Σ|t_i| of the exact one (to first order), so our result
and the float64 reference (itself within k·2**-53·Σ|t_i|) are within 2·k·u·Σ|t_i|, whatever the CPU, vector width,
blocking or thread count. Σ|t_i| for every entry at once is the same convolution (or gradient) of |x|, |w|, |g|,
computed in float64 by PyTorch's `torch.nn.grad` functions.
"""
from __future__ import annotations
import math

import numba
import pytest
import torch
import torch.nn.functional as F
from torch import nn

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import given, strategies as st

from mlfound.conv import Conv2d, col2im, conv2d, conv2d_unfold, conv_out_size, im2col, mnist_cnn

from conftest import unit

FLOAT_DTYPES = [torch.float32, torch.float64]


@st.composite
def conv_case(draw, square=False):
    "A random convolution: shapes, stride, padding (the kernel always fits the padded input), a seed."
    n, c, nf = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 20))
    kh = draw(st.integers(1, 4))
    kw = kh if square else draw(st.integers(1, 4))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * padding), 10))
    w = draw(st.integers(max(1, kw - 2 * padding), 10))
    return dict(n=n, c=c, nf=nf, kh=kh, kw=kw, stride=stride, padding=padding, h=h, w=w, seed=draw(st.integers(0, 2**16)))


def make(case, dtype, contiguous=True):
    "x, w, b, g for `case`, in `dtype`; `x` as a non-contiguous view if not `contiguous`."
    gen = torch.Generator().manual_seed(case['seed'])
    x = torch.randn(case['n'], case['c'], case['h'], case['w'], generator=gen, dtype=torch.float64)
    if not contiguous: x = x.transpose(2, 3).contiguous().transpose(2, 3)     # the same values, other strides
    w = torch.randn(case['nf'], case['c'], case['kh'], case['kw'], generator=gen, dtype=torch.float64)
    b = torch.randn(case['nf'], generator=gen, dtype=torch.float64)
    ho = conv_out_size(case['h'], case['kh'], case['stride'], case['padding'])
    wo = conv_out_size(case['w'], case['kw'], case['stride'], case['padding'])
    g = torch.randn(case['n'], case['nf'], ho, wo, generator=gen, dtype=torch.float64)
    return [t.to(dtype) for t in (x, w, b, g)]


def outputs_and_grads(f, x, w, b, g, stride, padding):
    "f's output and the gradients of (out * g).sum() with respect to x, w and b."
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    out = f(x, w, b, stride, padding)
    out.backward(g)
    return out.detach(), x.grad, w.grad, b.grad


def bounds(x, w, b, g, stride, padding, dtype):
    "The rounding bounds 2·k·u·Σ|t| of the output and of the gradients of x, w and b (see the module's docstring)."
    u, (X, W, B, G) = unit(dtype), (t.double().abs() for t in (x, w, b, g))
    nf, c, kh, kw = w.shape
    npos = g.shape[0] * g.shape[2] * g.shape[3]
    return (2 * (c * kh * kw + 1) * u * F.conv2d(X, W, B, stride, padding),
            2 * nf * kh * kw * u * torch.nn.grad.conv2d_input(x.shape, W, G, stride, padding),
            2 * npos * u * torch.nn.grad.conv2d_weight(X, w.shape, G, stride, padding),
            2 * npos * u * G.sum((0, 2, 3)))


def assert_within(a, ref, bound, what):
    "Every entry of `a` is within its entry of `bound` of `ref` (float64), plus the smallest normal number (for zeros)."
    assert a.shape == ref.shape, f'{what}: shapes {tuple(a.shape)} and {tuple(ref.shape)}'
    gap = (a.double() - ref).abs()
    ok = gap <= bound + torch.finfo(a.dtype).tiny
    assert ok.all(), f'{what}: largest excess {(gap - bound).max().item():.3g}, largest gap {gap.max().item():.3g}'


@given(conv_case())
def test_im2col_col2im_match_unfold_fold(case):
    x, _, _, _ = make(case, torch.float64)
    ks, s, p = case['kh'], case['stride'], case['padding']
    if ks > case['w'] + 2 * p: return                                  # the case was drawn for a kh×kw kernel
    cols = im2col(x, ks, s, p)
    assert torch.equal(cols, F.unfold(x, ks, padding=p, stride=s))   # a copy of the numbers: exactly equal
    y = torch.randn_like(cols)
    back = col2im(y, x.shape, ks, s, p)
    torch.testing.assert_close(back, F.fold(y, x.shape[2:], ks, padding=p, stride=s), rtol=0, atol=1e-12)
    # the transpose: <im2col(x), y> = <x, col2im(y)>, two float64 sums of at most a few thousand terms of size ~1
    assert abs((cols * y).sum() - (x * back).sum()) <= 1e-9


@pytest.mark.parametrize('dtype', FLOAT_DTYPES)
@given(case=conv_case(), contiguous=st.booleans())
def test_conv2d_matches_torch(dtype, case, contiguous):
    x, w, b, g = make(case, dtype, contiguous)
    s, p = case['stride'], case['padding']
    ref = outputs_and_grads(F.conv2d, *(t.double() for t in (x, w, b, g)), s, p)   # float64: within k·2**-53 of exact
    ours = outputs_and_grads(conv2d, x, w, b, g, s, p)
    for a, r, bd, what in zip(ours, ref, bounds(x, w, b, g, s, p, dtype), ('output', 'dx', 'dw', 'db')):
        assert a.dtype == dtype, what
        assert_within(a, r, bd, what)


@pytest.mark.parametrize('dtype', FLOAT_DTYPES)
@given(case=conv_case(square=True))
def test_conv2d_unfold_matches_torch(dtype, case):
    x, w, b, g = make(case, dtype)
    s, p = case['stride'], case['padding']
    ref = outputs_and_grads(F.conv2d, *(t.double() for t in (x, w, b, g)), s, p)
    ours = outputs_and_grads(conv2d_unfold, x, w, b, g, s, p)
    for a, r, bd, what in zip(ours, ref, bounds(x, w, b, g, s, p, dtype), ('output', 'dx', 'dw', 'db')): assert_within(a, r, bd, what)


def test_no_bias_and_frozen_input():
    "Without a bias, and with inputs that need no gradient (the first layer), only the gradients asked for are computed."
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 2, 7, 7, generator=gen), torch.randn(4, 2, 3, 3, generator=gen, requires_grad=True)
    out = conv2d(x, w, None, 2, 1)
    out.sum().backward()
    assert x.grad is None and w.grad is not None
    wr = w.detach().clone().requires_grad_()
    F.conv2d(x, wr, None, 2, 1).sum().backward()
    # sums over 3·4·4 = 48 positions of |x| ≤ 5: 2·48·2**-24·48·5 < 1e-3
    torch.testing.assert_close(w.grad, wr.grad, rtol=0, atol=1e-3)


def test_empty_batch():
    x, w = torch.randn(0, 3, 8, 8), torch.randn(5, 3, 3, 3)
    assert conv2d(x, w, None, 1, 1).shape == (0, 5, 8, 8)


@pytest.mark.parametrize('threads', [1, 2])
def test_threads_split_the_images(threads):
    "Each thread takes a share of the images (some none, with one image): the same results as one thread, to rounding."
    old = numba.get_num_threads()
    if threads > numba.config.NUMBA_NUM_THREADS: pytest.skip(f'numba was started with {numba.config.NUMBA_NUM_THREADS} threads')
    case = dict(n=3, c=3, nf=13, kh=3, kw=3, stride=2, padding=1, h=9, w=8, seed=7)
    try:
        numba.set_num_threads(threads)
        for n in (1, 3):
            x, w, b, g = make(case | dict(n=n), torch.float64)
            ref = outputs_and_grads(F.conv2d, x, w, b, g, 2, 1)
            for a, r in zip(outputs_and_grads(conv2d, x, w, b, g, 2, 1), ref):
                torch.testing.assert_close(a, r, rtol=0, atol=1e-10)   # float64 sums of at most 3·5·4·... terms of size ~1
    finally: numba.set_num_threads(old)


@pytest.mark.parametrize('dtype', FLOAT_DTYPES)
@pytest.mark.parametrize('c, nf, ks, s, h', [(1, 8, 5, 1, 28), (8, 16, 3, 2, 28), (16, 32, 3, 2, 14), (32, 64, 3, 2, 7),
                                              (64, 128, 3, 2, 4), (128, 10, 3, 2, 2)])
def test_conv2d_at_the_lesson_sizes(dtype, c, nf, ks, s, h):
    "The CNN's six layers, for 3 images: the kernels' paths for long rows and for short ones (slivers across images)."
    # long rows: whole slivers in one image, col2im by runs along the rows of a padded copy; short rows (the last two
    # layers' 2×2 and 1×1 outputs): col2im through the map of each window's pixels, straight into the unpadded gradient
    case = dict(n=3, c=c, nf=nf, kh=ks, kw=ks, stride=s, padding=ks // 2, h=h, w=h, seed=c)
    x, w, b, g = make(case, dtype)
    ref = outputs_and_grads(F.conv2d, *(t.double() for t in (x, w, b, g)), s, ks // 2)
    ours = outputs_and_grads(conv2d, x, w, b, g, s, ks // 2)
    for a, r, bd, what in zip(ours, ref, bounds(x, w, b, g, s, ks // 2, dtype), ('output', 'dx', 'dw', 'db')):
        assert a.dtype == dtype, what
        assert_within(a, r, bd, what)


@pytest.mark.parametrize('s, p, ks', [(1, 0, 2), (2, 1, 3)])
def test_gradcheck(s, p, ks):
    gen = torch.Generator().manual_seed(1)
    args = [torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True) for shape in ((2, 3, 6, 5), (4, 3, ks, ks), (4,))]
    assert torch.autograd.gradcheck(lambda x, w, b: conv2d(x, w, b, s, p), args)
    assert torch.autograd.gradcheck(lambda x, w, b: conv2d_unfold(x, w, b, s, p), args)


X, W = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)

@pytest.mark.parametrize('call, msg', [
    (lambda: conv2d(X[0], W), 'expected x of shape (N, C, H, W), got (3, 8, 8)'),
    (lambda: conv2d(X, W[:, :2]), 'x has 3 channels (shape (2, 3, 8, 8)) but w expects 2 (shape (4, 2, 3, 3))'),
    (lambda: conv2d(X, W[0]), 'expected w of shape (nf, C, kh, kw), got (3, 3, 3)'),
    (lambda: conv2d(X, torch.randn(4, 3, 9, 9)), 'the kernel (9×9) is bigger than the padded input (8×8'),
    (lambda: conv2d(X, torch.randn(4, 3, 11, 3), padding=1), 'the kernel (11×3) is bigger than the padded input (10×10'),
    (lambda: conv2d(X, W, torch.randn(3)), 'one bias per kernel, shape (4,), got (3,)'),
    (lambda: conv2d(X, W, stride=0), 'stride must be an integer >= 1'),
    (lambda: conv2d(X, W, stride=1.5), 'stride must be an integer >= 1'),
    (lambda: conv2d(X, W, padding=-1), 'padding must be an integer >= 0'),
    (lambda: conv2d(X.double(), W), 'must share a dtype'),
    (lambda: conv2d(X.long(), W.long()), 'convert with .float()'),
    (lambda: conv2d_unfold(X, torch.randn(4, 3, 3, 2)), 'square kernels only'),
    (lambda: im2col(X[0], 3), 'expected x of shape (N, C, H, W)'),
    (lambda: im2col(X, 0), 'ks must be an integer >= 1'),
    (lambda: im2col(X, 9), 'the kernel (9×9) is bigger than the padded input (8×8'),
    (lambda: col2im(torch.randn(2, 27, 5), X.shape, 3), 'expected columns of shape (2, 27, 36)'),
    (lambda: Conv2d(0, 4), 'ni must be an integer >= 1'),
    (lambda: Conv2d(3, 4, padding=-1), 'padding must be an integer >= 0 or None'),
])
def test_bad_arguments(call, msg):
    with pytest.raises((ValueError, TypeError)) as e: call()
    assert msg in str(e.value), str(e.value)


@pytest.mark.parametrize('ni, nf, ks, stride, bias', [(3, 8, 5, 2, True), (1, 4, 3, 1, False), (16, 32, 1, 1, True)])
def test_conv2d_module_and_nn_conv2d(ni, nf, ks, stride, bias):
    torch.manual_seed(42); ours = Conv2d(ni, nf, ks, stride, bias=bias)
    torch.manual_seed(42); theirs = nn.Conv2d(ni, nf, ks, stride, padding=ks // 2, bias=bias)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()): assert torch.equal(a, b)   # the same draws
    assert list(ours.state_dict()) == list(theirs.state_dict())
    other = nn.Conv2d(ni, nf, ks, stride, padding=ks // 2, bias=bias)
    ours.load_state_dict(other.state_dict())                           # strict: same keys and shapes
    back = nn.Conv2d(ni, nf, ks, stride, padding=ks // 2, bias=bias)
    back.load_state_dict(ours.state_dict())
    for a, b in zip(back.state_dict().values(), other.state_dict().values()): assert torch.equal(a, b)
    x = torch.randn(2, ni, 9, 9)
    wd, bd = other.weight.double(), None if other.bias is None else other.bias.double()
    # outputs: sums of ni·ks·ks products plus the bias; Σ|t| from the same convolution of |x| and |w|, as in the docstring
    bound = 2 * (ni * ks * ks + 1) * unit(torch.float32) * F.conv2d(x.abs().double(), wd.abs(), None if bd is None else bd.abs(), stride, ks // 2)
    assert_within(ours(x).detach(), F.conv2d(x.double(), wd, bd, stride, ks // 2), bound, 'Conv2d output')


def test_mnist_cnn_shapes():
    torch.manual_seed(0)
    out = mnist_cnn()(torch.randn(3, 784))
    assert out.shape == (3, 10)
