"""`matmul_goto`: every kernel configuration on 1, 2 and 3 threads, the AVX2 profile, and the choice of configuration.

The notebooks run with one numba thread each in CI (two notebooks share the two cores), so the way the kernel
splits C between threads (columns in equal shares, or rows when C is tall) and cuts each share into blocks of
equal width is tested here, in processes that may start three threads. Every configuration of `TILES` runs on
any CPU (LLVM splits a vector too wide for the machine), so all six are tested wherever the tests run; the
`avx2` machine profile is tested in a process of its own, since numba fixes its target when a process first
compiles. Results are compared with `torch.matmul` within `rounding_bound`, 2·k·u·(|a| @ |b|) entry by entry:
the bound on the rounding of two dot products of length k, whatever order each adds in.
"""
import os, platform, subprocess, sys, textwrap

import llvmlite.binding as llvm
import numba
import pytest
import torch

from mlfound.core import MACHINE_PROFILES, profile_env, rounding_bound
from mlfound.fast_matmul import (ISAS, MC_BYTES, TILES, GotoConfig, choose_config, goto_blocks, goto_config, goto_isa,
                                 goto_kernels, matmul_goto, numba_target)

HOST_AVX512 = '+64bit,+avx,+avx2,+fma,+avx512f,+avx512bw,+avx512dq,+avx512vl'
_host = llvm.get_host_cpu_features()
RUNS_AVX2 = platform.machine() in ('x86_64', 'AMD64') and bool(_host.get('avx2') and _host.get('fma'))   # the avx2 profile's code runs here


@pytest.mark.parametrize('features, isa', [
    (HOST_AVX512, 'avx512'),                               # an AVX-512 host as numba targets it,
    (HOST_AVX512 + ',-prefer-256-bit', 'avx512'),          #   or as `wide_vectors` leaves it: the kernel's own vectors
    (HOST_AVX512 + ',+prefer-256-bit', 'avx512'),          #   stay whole either way
    (HOST_AVX512 + ',-evex512', 'avx2'),                   # AVX-512's instructions on 256-bit registers only (AVX10/256)
    (HOST_AVX512 + ',-prefer-256-bit,-avx512f', 'avx2'),   # the last mention of a feature wins, as in LLVM
    (MACHINE_PROFILES['avx2']['NUMBA_CPU_FEATURES'], 'avx2'),
    ('+avx,+avx2,-fma', 'neon'),                           # AVX2 without FMA: the 128-bit tile
    ('+sse2,+sse4.2', 'neon'),
    ('+neon,+fp-armv8,+crc,+lse', 'neon'),                 # an ARM CPU
    ('', 'neon'),
])
def test_goto_isa(features, isa):
    assert goto_isa(features) == isa


CACHES = [{1: 32 << 10, 2: 256 << 10, 3: 8 << 20}, {1: 48 << 10, 2: 2 << 20, 3: 105 << 20}, {1: 64 << 10, 2: 1 << 20},
          {1: 128 << 10, 2: 12 << 20}, {1: 32 << 10, 2: 512 << 10, 3: 16 << 20}, {3: 1 << 20},
          {}]   # Skylake, Sapphire Rapids, N1, M1 (no L3 given), Zen 2, a tiny L3 alone, none


@pytest.mark.parametrize('isa, dtype', list(TILES))
@pytest.mark.parametrize('caches', CACHES)
def test_config_fits_registers_and_caches(isa, dtype, caches):
    cfg = goto_config(isa, dtype, caches)
    vbits, regs, _, l1, l2, l3 = ISAS[isa]
    l1, l2, l3 = caches.get(1, l1), caches.get(2, l2), caches.get(3, l3)
    assert (cfg.vbits, cfg.dtype, cfg.name) == (vbits, dtype, f"{isa}-{dtype.replace('float', 'f')}")
    assert cfg.nr % cfg.lanes == 0 and cfg.registers <= regs               # whole vectors; the tile fits the registers
    assert cfg.kc > 0 and cfg.kc % 16 == 0 and cfg.kc * cfg.mr * cfg.itemsize <= l1 // 2   # A's panel in half of L1
    assert cfg.nc % cfg.nr == 0 and cfg.nc >= 8 * cfg.nr                    # B's block: whole slivers, at least 8
    assert cfg.kc * cfg.nc * cfg.itemsize <= l2 // 2                        # in half of L2
    assert cfg.mc % cfg.mr == 0 and cfg.mc >= cfg.mr                        # A's block: whole panels, at least one
    assert cfg.mc == cfg.mr or cfg.mc * cfg.kc * cfg.itemsize <= min(l3 // 2, MC_BYTES)   # in half of L3, capped
    assert 1 <= cfg.ahead <= 64


def test_blocks_match_blis_where_caches_agree():
    "On Skylake's 32 KiB L1, 256 KiB L2 and 8 MiB L3, the AVX2 float32 tile gets BLIS haswell's kc = 256, and mc near its 4080."
    assert goto_blocks(6, 16, 4, 32 << 10, 256 << 10, 8 << 20) == (256, 128, 4092)
    assert goto_blocks(12, 32, 4, 48 << 10, 2 << 20, 105 << 20) == (512, 512, 8184)   # A's block capped at MC_BYTES
    assert goto_blocks(12, 32, 4, 48 << 10, 2 << 20, 1 << 10) == (512, 512, 12)       # a tiny L3: still one panel


@pytest.mark.parametrize('k, kc, slices', [(1024, 336, [256] * 4), (999, 512, [500, 499]), (1024, 512, [512, 512]),
                                             (337, 336, [169, 168]), (5, 336, [5]), (1, 336, [1])])
def test_k_cut_into_equal_slices(k, kc, slices):
    "The loops cut k into as few slices as kc allows, of equal length: no thin last slice costs a whole pass over C."
    blocks = goto_kernels(goto_config('avx512', 'float32'))['blocks']
    kc_run = blocks(40, k, 40, kc, 512, 8184, 1)[0]
    assert [min(kc_run, k - p0) for p0 in range(0, k, kc_run)] == slices   # as `loops` walks along k
    assert blocks(40, 0, 40, kc, 512, 8184, 1)[0] >= 1                      # k = 0: still a workspace to size


def test_bad_config_requests():
    with pytest.raises(ValueError, match="no kernel for 'sve' and 'float32'"): goto_config('sve')
    a = torch.ones(3, 4)
    with pytest.raises(TypeError, match='multiplies float64, but a is torch.float32'):
        matmul_goto(a, a.T, goto_config('avx2', 'float64'))


@pytest.mark.parametrize('profile, isa', [('avx2', 'avx2')])
def test_choose_config_follows_numba_target(monkeypatch, profile, isa):
    "Pure configuration logic: the variables a reader sets decide the configuration (nothing is compiled here)."
    for k, v in MACHINE_PROFILES[profile].items(): monkeypatch.setenv(k, v)
    try:
        assert numba_target()[0] == 'haswell'
        assert choose_config(torch.float32).name == f'{isa}-f32' and choose_config(torch.float64).name == f'{isa}-f64'
        assert choose_config(torch.bfloat16).dtype == 'float32'             # other floats are multiplied in float32
        monkeypatch.setenv('NUMBA_CPU_FEATURES', HOST_AVX512)                # an AVX-512 target, widened or not
        assert choose_config(torch.float32).name == 'avx512-f32'
    finally:
        monkeypatch.undo()
        numba.core.config.reload_config()


SCRIPT = textwrap.dedent('''
    from mlfound.fast_matmul import wide_vectors; wide_vectors()   # before numba compiles anything, as the notebook does
    import sys
    from dataclasses import replace
    import numba, torch
    from mlfound.matmul import CHECK_SHAPES
    from mlfound.fast_matmul import TILES, goto_config, choose_config, cpu_caches, check_goto
    configs = [goto_config(isa, dt, cpu_caches()) for isa, dt in TILES] if sys.argv[1] == 'all' else \\
              [choose_config(torch.float32), choose_config(torch.float64)]
    print(' '.join(c.name for c in configs), flush=True)
    for cfg in configs:
        mr, nr, kc, nc = cfg.mr, cfg.nr, cfg.kc, cfg.nc
        shapes = CHECK_SHAPES + (                   # square, tall, wide, one row, k = 1, k = 0, empty results
            (130, 600, 2100),                       # wide: each thread takes columns, in several blocks
            (2100, 300, 130),                       # tall: each thread takes rows
            (4 * mr + 5, 2 * kc + 3, 2 * nc + nr + 5),   # two slices along k, ragged everywhere
            (3, 7, 2 * nr),                         # two slivers for three threads: rows, and one task has none
            (0, 0, 5), (4, 0, 0),                   # empty inputs
            (1000, 999, 1001))
        small = replace(cfg, kc=16, nc=2 * nr, mc=2 * mr)   # many blocks of B per thread, many blocks of A
        dt = getattr(torch, cfg.dtype)
        for nt in (1, 2, 3):
            numba.set_num_threads(nt)
            check_goto(cfg, shapes, dt)
            check_goto(small, shapes[-7:], dt)
        print(cfg.name, 'ok', flush=True)
''')


@pytest.mark.parametrize('isa, dtype', list(TILES))
def test_packing_layouts(isa, dtype):
    "`pack_a` and `pack_b` of every configuration write the layouts the micro-kernel reads, against NumPy's slicing."
    import numpy as np
    cfg = goto_config(isa, dtype)
    k_, mr, nr = goto_kernels(cfg), cfg.mr, cfg.nr
    x = np.random.default_rng(0).standard_normal((3 * mr + 5, 4 * nr + 7)).astype(dtype)
    for p0, p1 in ((0, 9), (3, 3 + 2 * cfg.lanes + 1)):        # whole vectors, and a few columns past them
        for i0 in (0, mr + 1, 3 * mr):                           # whole panels, and a last one of 5 rows
            ap = np.full((p1 - p0) * mr, np.nan, dtype)
            k_['pack_a'](x, i0, p0, p1, ap)
            want = np.zeros((mr, p1 - p0), dtype); rows = x[i0:i0 + mr, p0:p1]; want[:len(rows)] = rows
            np.testing.assert_array_equal(ap, want.T.reshape(-1))   # column by column, zero rows past the end
        for j0, j1 in ((0, 2 * nr), (5, 5 + 3 * nr + 7)):        # whole slivers, and a ragged last one
            ns = (j1 - j0 + nr - 1) // nr
            bp = np.full(ns * (p1 - p0) * nr, np.nan, dtype)
            k_['pack_b'](x, p0, p1, j0, j1, bp)
            want = np.zeros((p1 - p0, ns * nr), dtype); want[:, :j1 - j0] = x[p0:p1, j0:j1]
            np.testing.assert_array_equal(bp, want.reshape(p1 - p0, ns, nr).transpose(1, 0, 2).reshape(-1))


def run_script(which, env):
    r = subprocess.run([sys.executable, '-c', SCRIPT, which], capture_output=True, text=True, env=env, timeout=1200)
    assert r.returncode == 0, f'matmul_goto failed:\n{r.stdout}\n{r.stderr[-3000:]}'
    names, *done = r.stdout.splitlines()
    assert done == [f'{n} ok' for n in names.split()], r.stdout
    return names.split()


def test_every_config_on_several_threads():
    env = {**os.environ, 'NUMBA_NUM_THREADS': '3', 'OMP_NUM_THREADS': '1'}
    assert run_script('all', env) == [f"{isa}-{dt.replace('float', 'f')}" for isa, dt in TILES]


@pytest.mark.skipif(not RUNS_AVX2, reason='the avx2 profile needs an x86 CPU with AVX2 and FMA')
def test_avx2_profile_on_several_threads():
    "Under the avx2 profile (a reader's setting, whatever this process has) `matmul_goto` chooses the AVX2 tiles."
    base = {k: v for k, v in os.environ.items() if k not in MACHINE_PROFILES['avx2'] and k != 'NUMBA_NUM_THREADS'}
    assert run_script('chosen', profile_env('avx2', 3, base)) == ['avx2-f32', 'avx2-f64']


@pytest.mark.skipif(not RUNS_AVX2, reason='the avx2 profile needs an x86 CPU with AVX2 and FMA')
def test_avx2_profile_compiles_no_512_bit_instruction():
    code = textwrap.dedent('''
        import re, torch
        from mlfound.fast_matmul import choose_config, goto_kernels, matmul_goto
        matmul_goto(torch.ones(2, 3), torch.ones(3, 4))
        loops = goto_kernels(choose_config(torch.float32))['loops']
        asm = loops.inspect_asm(loops.signatures[0])
        print(len(re.findall(r'%zmm', asm)), len(re.findall(r'vfmadd\\w*ps\\s[^\\n]*%ymm', asm)))
    ''')
    base = {k: v for k, v in os.environ.items() if k not in MACHINE_PROFILES['avx2']}
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=profile_env('avx2', 1, base), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    zmm, fma256 = map(int, r.stdout.split())
    assert zmm == 0 and fma256 >= 12, r.stdout           # the 6×16 tile's 12 FMAs, on 256-bit registers only
