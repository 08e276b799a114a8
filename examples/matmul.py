"""The README's example: a matrix multiply written once as a tensor expression, scheduled, compiled."""

import numpy as np

import lathe
from lathe import te

n = 512
A = te.placeholder((n, n), name="A")
B = te.placeholder((n, n), name="B")
k = te.reduce_axis(n, name="k")
C = te.compute((n, n), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")

s = te.create_schedule(C)
i, j = C.op.axis
io, jo, ii, ji = s[C].tile(i, j, 8, 32)  # 8x32 blocks of C
ko, ki = s[C].split(k, 4)
s[C].reorder(io, jo, ko, ki, ii, ji)
s[C].unroll(ki)
s[C].vectorize(ji)  # 32 lanes: real vector instructions, not a pragma
s[C].parallel(io)
print(lathe.lower(s, [A, B, C]))

matmul = lathe.build(s, [A, B, C], target="llvm")
a = np.random.rand(n, n).astype("float32")
b = np.random.rand(n, n).astype("float32")
c = np.zeros((n, n), dtype="float32")
matmul(a, b, c)
np.testing.assert_allclose(c, a @ b, rtol=1e-5)
t = matmul.time(a, b, c, repeat=20)
print(f"{2 * n**3 / t.median / 1e9:.1f} GFLOP/s, median of 20 runs ({t.median * 1e3:.2f} ms)")
