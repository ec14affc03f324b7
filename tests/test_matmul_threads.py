"""`matmul_goto` on 1, 2 and 3 threads.

The notebooks run with one numba thread each in CI (two notebooks share the two cores), so the way the kernel
splits C between threads (columns in equal shares, or rows when C is tall) and cuts each share into blocks of
equal width is tested here, in a process that may start three threads.
"""
import os, subprocess, sys, textwrap

SCRIPT = textwrap.dedent('''
    from mlfound.fast_matmul import wide_vectors; wide_vectors()   # before numba compiles anything, as the notebook does
    from functools import partial
    import numba, torch
    from mlfound.matmul import check_matmul, CHECK_SHAPES
    from mlfound.fast_matmul import matmul_goto, MR, NR, GOTO_KC, GOTO_NC
    shapes = CHECK_SHAPES + (
        (130, 600, 2100),                       # wide: each thread takes columns, in several blocks
        (2100, 300, 130),                       # tall: each thread takes rows
        (4 * MR + 5, 2 * GOTO_KC + 3, 2 * GOTO_NC + NR + 5),   # two slices along k, ragged everywhere
        (3, 7, 2 * NR),                         # two slivers for three threads: rows, and one task has none
        (1000, 999, 1001))
    for nt in (1, 2, 3):
        numba.set_num_threads(nt)
        check_matmul(matmul_goto, shapes=shapes)
        check_matmul(partial(matmul_goto, kc=16, nc=64), shapes=shapes[-5:])          # many blocks per thread
        check_matmul(partial(matmul_goto, pack_b=False, ahead=0), shapes=shapes[-5:])
        check_matmul(matmul_goto, shapes=shapes[-5:], dtype=torch.float64, eps=1e-9)
        print(nt, 'threads: ok', flush=True)
''')


def test_goto_on_several_threads():
    env = {**os.environ, 'NUMBA_NUM_THREADS': '3', 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, f'matmul_goto failed on several threads:\n{r.stdout}\n{r.stderr[-3000:]}'
    assert r.stdout.split() == '1 threads: ok 2 threads: ok 3 threads: ok'.split(), r.stdout
