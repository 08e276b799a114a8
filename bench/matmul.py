"""1024x1024x1024 fp32 matmul: lathe's best schedule on `llvm` against NumPy's BLAS, same run.

    python bench/matmul.py [--n 1024] [--threads 2] [--runs 30]

The schedule packs B into panels of NR columns, keeps an MR x NR tile of C in registers
(cache_write + unroll + vectorize), and runs panels in parallel. Vector width comes from the
host's features (16 floats with AVX-512, 8 with AVX2). A few (MR, NR) candidates are tried and
the fastest is compared with NumPy.
"""

from __future__ import annotations

import argparse
import os
import sys

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--n", type=int, default=1024)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--runs", type=int, default=30)
args = ap.parse_args()
# BLAS reads its thread count when NumPy is imported
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lathe  # noqa: E402
from bench.common import interleaved, machine, save, stats  # noqa: E402
from lathe import te  # noqa: E402


def matmul_schedule(n: int, mr: int, nr: int):
    A = te.placeholder((n, n), name="A")
    B = te.placeholder((n, n), name="B")
    k = te.reduce_axis(n, "k")
    packed = te.compute((n // nr, n, nr), lambda jo, kk, ji: B[kk, jo * nr + ji], name="packedB")
    C = te.compute((n, n), lambda i, j: te.sum(A[i, k] * packed[j // nr, k, j % nr], axis=k), name="C")
    s = te.create_schedule(C)
    acc = s.cache_write(C, "local")  # the MR x NR register tile
    i, j = s[C].op.axis
    io, jo, ii, ji = s[C].tile(i, j, mr, nr)
    s[C].reorder(jo, io, ii, ji)  # one B panel stays in cache while all row blocks pass
    tile = s[C].fuse(jo, io)
    s[C].parallel(tile)
    s[acc].compute_at(s[C], tile)
    ai, aj = s[acc].op.axis
    ko, ki = s[acc].split(s[acc].op.reduce_axis[0], 4)
    s[acc].reorder(ko, ki, ai, aj)
    s[acc].unroll(ki)
    s[acc].unroll(ai)
    s[acc].vectorize(aj)
    pj, _, pji = s[packed].op.axis
    s[packed].vectorize(pji)
    s[packed].parallel(pj)
    return s, [A, B, C]


def main() -> None:
    n, threads = args.n, args.threads
    info = machine()
    vec = 16 if "avx512f" in info["simd"] else 8
    target = f"llvm -threads={threads}"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    expect = a @ b
    candidates = [(8, 2 * vec), (4, 4 * vec), (6, 2 * vec)]
    best = None
    for mr, nr in candidates:
        if n % nr:
            continue
        s, tensors = matmul_schedule(n, mr, nr)
        kernel = lathe.build(s, tensors, target=target, name="matmul")
        c = np.zeros((n, n), np.float32)
        kernel(a, b, c)
        err = float(np.max(np.abs(c - expect)) / np.max(np.abs(expect)))
        if err > 1e-5:
            raise SystemExit(f"MR={mr} NR={nr}: result differs from NumPy (max rel error {err:.2e})")
        t = kernel.time(a, b, c, repeat=10).median
        print(f"  candidate MR={mr:2d} NR={nr:2d}: {t * 1e3:7.2f} ms  {2 * n**3 / t / 1e9:6.1f} GFLOP/s")
        if best is None or t < best[0]:
            best = (t, mr, nr, kernel, c)
    _, mr, nr, kernel, c = best
    times = interleaved({"lathe": lambda: kernel(a, b, c), "numpy": lambda: np.matmul(a, b)}, args.runs)
    res = {k: stats(v) for k, v in times.items()}
    for r in res.values():
        r["gflops"] = 2 * n**3 / (r["median_ms"] * 1e-3) / 1e9
    ratio = res["lathe"]["gflops"] / res["numpy"]["gflops"]
    print(f"{n}x{n}x{n} fp32, {threads} threads, {info['llvm_cpu']} ({', '.join(info['simd'])}), "
          f"median of {args.runs}:")
    for k, r in res.items():
        print(f"  {k:6s} {r['median_ms']:7.2f} ms (p10 {r['p10_ms']:.2f}, p90 {r['p90_ms']:.2f})  "
              f"{r['gflops']:6.1f} GFLOP/s")
    print(f"  lathe / NumPy throughput: {ratio:.2f} (schedule MR={mr}, NR={nr})")
    path = save("matmul", {"n": n, "threads": threads, "target": target, "schedule": {"mr": mr, "nr": nr},
                           "results": res, "ratio_lathe_over_numpy": ratio})
    print(f"  saved {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
