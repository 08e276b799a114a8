"""Schedule -> loop IR.

Steps, each a small function:
  inline_bodies   substitute compute_inline stages into their readers
  infer_regions   for a compute_at stage, the region its consumers need at the attach loop
  make_nest       one loop per leaf iter var, the reduction init placed before the first
                  reduction loop, tail guards for splits that do not divide, attached
                  producers allocated and computed at their loop, prefetch hints
"""

from __future__ import annotations

from lathe.errors import ScheduleError
from lathe.expr import (
    Call, Const, Expr, IterVar, Load, Reduce, TensorRead, Var, binary, combine, contains, index_of, post_order,
    substitute, transform,
)
from lathe.te.schedule import Schedule, Split, Stage
from lathe.te.tensor import ComputeOp, PlaceholderOp, Tensor
from lathe.tir.arith import INF, Analyzer, Linear
from lathe.tir.stmt import Allocate, Buffer, Evaluate, For, IfThenElse, PrimFunc, Stmt, Store, seq

BARRIER = Evaluate(Call("barrier", (), "int32"))  # a work-group barrier on shared memory (GPU targets)
LOOP_KIND = {"vectorize": "vectorize", "unroll": "unroll", "parallel": "parallel"}


class _StageInfo:
    """What lowering learns about one stage: its region, leaf extents and root index values."""

    def __init__(self, stage: Stage):
        self.stage = stage
        self.body: Expr = stage.op.body if isinstance(stage.op, ComputeOp) else None
        self.region: list[tuple[Expr, int]] = []  # per data dim: (min, extent)
        self.leaf_ext: dict[IterVar, int] = {}
        self.value: dict[IterVar, Expr] = {}  # root/intermediate iter var -> expr of leaves (0-based)
        self.guards: list[Expr] = []  # split tails: conditions on leaves
        self.buffer: Buffer | None = None


def lower_schedule(sch: Schedule, args: list, name: str = "main", strides: list | None = None) -> PrimFunc:
    """`strides[k]`, when given and not None, are the element strides of argument k's array."""
    stages = [st for st in sch.stages]
    info = {st: _StageInfo(st) for st in stages}
    inline_bodies(sch, stages, info)
    live = [st for st in stages if isinstance(st.op, ComputeOp) and st.attach != "inline"]
    params = _param_buffers(sch, args, info, live, strides or [None] * len(args))
    _check_attach(sch, live)
    for st in reversed(live):  # consumers before producers
        infer_region(sch, st, info, live)
        _derive_leaves(info[st])
        if info[st].buffer is None:
            shape = tuple(ext for _, ext in info[st].region)
            info[st].buffer = Buffer(st.name, shape, st.op.dtype, st.scope)
    children: dict = {}
    for st in live:
        if st.attach == "at":
            children.setdefault((st.attach_stage, st.attach_ivar), []).append(st)
    body_parts = [make_nest(sch, st, info, children) for st in live if st.attach == "root"]
    body = seq(*body_parts)
    for st in reversed([st for st in live if st.attach == "root" and info[st].buffer not in params]):
        body = Allocate(info[st].buffer, body)
    return PrimFunc(name, params, body)


# ---------------------------------------------------------------------------- inlining

def inline_bodies(sch: Schedule, stages: list[Stage], info: dict) -> None:
    for st in stages:
        inf = info[st]
        if inf.body is None:
            continue
        inf.body = transform(inf.body, lambda n: _inline_read(sch, n, info))


def _inline_read(sch: Schedule, n: Expr, info: dict) -> Expr | None:
    if not isinstance(n, TensorRead):
        return None
    src = sch[n.tensor.op]
    if src.attach != "inline":
        return None
    body = info[src].body
    return substitute(body, dict(zip(src.op.axis, n.indices)))


# ---------------------------------------------------------------------------- checks

def _param_buffers(sch: Schedule, args: list, info: dict, live: list[Stage], strides: list) -> list[Buffer]:
    params = []
    seen = set()
    for t, st_strides in zip(args, strides):
        if not isinstance(t, Tensor):
            raise TypeError(f"build/lower args must be tensors, got {t!r}")
        if t.op not in sch._stage_of and isinstance(t.op, PlaceholderOp):  # an input nothing reads
            params.append(Buffer(t.name, t.shape, t.dtype, strides=st_strides))
            continue
        try:
            st = sch[t.op]
        except ScheduleError:
            raise ScheduleError(f"argument {t.name} is not part of this schedule") from None
        if st in seen:
            raise ScheduleError(f"argument {t.name} is listed twice")
        seen.add(st)
        if st.attach == "inline" or (st.attach == "at"):
            raise ScheduleError(f"stage {st.name} is an argument, so it must be computed at root, "
                                f"not {st.attach}")
        info[st].buffer = Buffer(t.name, t.shape, t.dtype, strides=st_strides)
        info[st].region = [(Const(0, "int32"), d) for d in t.shape]
        params.append(info[st].buffer)
    for st in live:
        for t in _reads(info[st].body):
            src = sch[t.op]
            if isinstance(src.op, PlaceholderOp) and src not in seen:
                raise ScheduleError(f"stage {st.name} reads input {t.name}, which is not in the argument list")
    for op in sch.outputs:
        if sch[op] not in seen:
            raise ScheduleError(f"output {op.name} of the schedule is not in the argument list")
    return params


def _check_attach(sch: Schedule, live: list[Stage]) -> None:
    for st in live:
        if st.attach != "at":
            continue
        parent, iv = st.attach_stage, st.attach_ivar
        if parent.attach == "inline":
            raise ScheduleError(f"stage {st.name} is computed at stage {parent.name}, which is inlined")
        if not contains(parent.leaf_iter_vars, iv):
            raise ScheduleError(f"stage {st.name} is computed at axis {iv.name} of stage {parent.name}, "
                                "but that axis was split or fused afterwards; compute_at the new axis")


def _reads(body: Expr | None) -> list[Tensor]:
    return [] if body is None else [r.tensor for r in _reads_nodes(body)]


# ---------------------------------------------------------------------------- bounds

def _derive_leaves(inf: _StageInfo) -> None:
    """Leaf extents from the (bounded) root extents, and each root value from the leaves."""
    st = inf.stage
    ext: dict[IterVar, int] = {}
    for iv, (_, e) in zip(st.op.axis, inf.region):
        ext[iv] = e
    for iv in st.op.reduce_axis:
        ext[iv] = iv.extent.value
    for rel in st.relations:
        if isinstance(rel, Split):
            ext[rel.outer] = -(-ext[rel.parent] // rel.factor)
            ext[rel.inner] = rel.factor
        else:
            ext[rel.fused] = ext[rel.outer] * ext[rel.inner]
    value: dict[IterVar, Expr] = {iv: iv for iv in st.leaf_iter_vars}
    guards = []
    for rel in reversed(st.relations):
        if isinstance(rel, Split):
            value[rel.parent] = value[rel.outer] * rel.factor + value[rel.inner]
            if ext[rel.outer] * rel.factor != ext[rel.parent]:
                guards.append(value[rel.parent] < ext[rel.parent])
        else:
            n = ext[rel.inner]
            value[rel.outer] = value[rel.fused] // n
            value[rel.inner] = value[rel.fused] % n
    inf.leaf_ext = {iv: ext[iv] for iv in st.leaf_iter_vars}
    inf.value, inf.guards = value, guards


def root_index(inf: _StageInfo, iv: IterVar) -> Expr:
    """The absolute value of root iter var `iv` in terms of this stage's leaf loops."""
    st = inf.stage
    if iv.kind == "reduce":
        return inf.value[iv] + iv.min
    k = index_of(st.op.axis, iv)
    return inf.value[iv] + inf.region[k][0]


def infer_region(sch: Schedule, st: Stage, info: dict, live: list[Stage]) -> None:
    inf = info[st]
    if inf.region:
        return
    if st.attach != "at":
        inf.region = [(Const(0, "int32"), d) for d in st.op.shape]
        return
    ranges: list[list] = [[] for _ in st.op.shape]
    for cons in live:
        reads = [r for r in _reads_nodes(info[cons].body) if sch[r.tensor.op] is st]
        if not reads:
            continue
        relaxed = _relaxed_leaves(st, cons, info)
        cinf = info[cons]
        root_vals = {iv: root_index(cinf, iv) for iv in cons.root_iter_vars}
        for r in reads:
            for d, idx in enumerate(r.indices):
                ranges[d].append(_bound(substitute(idx, root_vals), relaxed))
    region = []
    for d, full in enumerate(st.op.shape):
        region.append(_union(ranges[d], full))
    inf.region = region


def _reads_nodes(body: Expr) -> list[TensorRead]:
    out: list[TensorRead] = []
    post_order(body, lambda n: out.append(n) if isinstance(n, TensorRead) else None)
    return out


def _relaxed_leaves(st: Stage, cons: Stage, info: dict) -> dict:
    """Leaf loops of `cons` (and its ancestors) that vary within one iteration of st's attach loop."""
    target, iv = st.attach_stage, st.attach_ivar
    relaxed: dict = {}
    cur, inside_from = cons, None
    while True:
        leaves = cur.leaf_iter_vars
        if cur is target:
            k = index_of(leaves, iv)
            if inside_from is not None and inside_from < k:
                raise ScheduleError(f"stage {st.name} is computed at {target.name}.{iv.name} but its reader "
                                    f"{cons.name} runs outside that loop")
            for leaf in leaves[k + 1:]:
                relaxed[leaf] = (0, info[cur].leaf_ext[leaf] - 1)
            if st.scope == "shared":  # one copy serves the work-group: the region spans its threads
                relaxed.update(_thread_leaves(cur, info))
            return relaxed
        for leaf in leaves:
            relaxed[leaf] = (0, info[cur].leaf_ext[leaf] - 1)
        if cur.attach != "at":
            raise ScheduleError(f"stage {st.name} is computed at {target.name}.{iv.name} but its reader "
                                f"{cons.name} is not inside that loop; attach {cons.name} there too, or "
                                f"compute_at {st.name} in {cons.name}")
        inside_from = index_of(cur.attach_stage.leaf_iter_vars, cur.attach_ivar)
        cur = cur.attach_stage


def _thread_leaves(st: Stage, info: dict) -> dict:
    """Leaves bound to threadIdx.* of `st` and of the stages it is computed in, with their ranges."""
    out = {}
    while st is not None:
        for leaf, tag in st.bindings.items():
            if tag.startswith("threadIdx"):
                out[leaf] = (0, info[st].leaf_ext[leaf] - 1)
        st = st.attach_stage if st.attach == "at" else None
    return out


def _bound(idx: Expr, relaxed: dict) -> tuple[Linear, int, int] | None:
    """idx over the relaxed leaves as (symbolic base, lo offset, hi offset), or None if unknown."""
    an = Analyzer(relaxed)
    lin = an.linear(idx)
    base = Linear(const=lin.const)
    lo = hi = 0
    for key, (atom, c) in lin.terms.items():
        vars_ = set()
        post_order(atom, lambda n: vars_.add(n) if isinstance(n, Var) else None)
        if not any(v in relaxed for v in vars_):
            base.terms[key] = [atom, c]
            continue
        if any(v not in relaxed for v in vars_) or isinstance(atom, Load):
            return None
        a_lo, a_hi = an.range_of(atom)
        if a_lo == -INF or a_hi == INF:
            return None
        lo += min(a_lo * c, a_hi * c)
        hi += max(a_lo * c, a_hi * c)
    return base, lo, hi


def _union(bounds: list, full: int) -> tuple[Expr, int]:
    if not bounds or any(b is None for b in bounds):
        return Const(0, "int32"), full
    base0 = bounds[0][0]
    lo = hi = None
    for base, blo, bhi in bounds:
        diff = base.add(base0, -1)
        if diff.terms:  # bases differ symbolically: fall back to the whole tensor
            return Const(0, "int32"), full
        lo = blo + diff.const if lo is None else min(lo, blo + diff.const)
        hi = bhi + diff.const if hi is None else max(hi, bhi + diff.const)
    if hi - lo + 1 >= full and not base0.terms:
        return Const(0, "int32"), full
    return base0.add(Linear(const=lo)).to_expr(), hi - lo + 1


# ---------------------------------------------------------------------------- loop nests

def _to_load(sch: Schedule, info: dict, n: Expr) -> Expr | None:
    if not isinstance(n, TensorRead):
        return None
    src = info[sch[n.tensor.op]]
    idx = [transform(i, lambda m: _to_load(sch, info, m)) for i in n.indices]
    return Load(src.buffer, tuple(i - m if not (isinstance(m, Const) and m.value == 0) else i
                                  for i, (m, _) in zip(idx, src.region)))


def make_nest(sch: Schedule, st: Stage, info: dict, children: dict) -> Stmt:
    inf = info[st]
    op: ComputeOp = st.op
    roots = {iv: root_index(inf, iv) for iv in st.root_iter_vars}
    body = substitute(inf.body, roots)
    body = transform(body, lambda n: _to_load(sch, info, n))
    store_idx = tuple(inf.value[iv] for iv in op.axis)
    guards = list(inf.guards)
    for k, iv in enumerate(op.axis):  # a bounded region may poke past the tensor at split tails
        lo, ext = inf.region[k]
        if not (isinstance(lo, Const) and lo.value == 0 and ext <= op.shape[k]):
            guards.append(roots[iv] < op.shape[k])
            guards.append(roots[iv] >= 0)
    leaves = st.leaf_iter_vars
    if not isinstance(body, Reduce):
        return _loops(st, inf, leaves, Store(inf.buffer, store_idx, body), guards, children, info, sch)
    # reduction: init before the first reduction loop, over the data loops inside it
    red = body
    update = Store(inf.buffer, store_idx, combine(red.combiner, Load(inf.buffer, store_idx), red.source))
    if red.where is not None:
        update = IfThenElse(red.where, update)
    first = next(k for k, iv in enumerate(leaves) if iv.kind == "reduce")
    inner_vars = set(leaves[first:])
    outer_guards = [g for g in guards if not _uses(g, inner_vars)]
    inner_guards = [g for g in guards if _uses(g, inner_vars)]
    data_guards = [g for g in inner_guards if not _uses(g, {iv for iv in leaves if iv.kind == "reduce"})]
    init_loops = [iv for iv in leaves[first:] if iv.kind == "data"]
    init = _loops(st, inf, init_loops, Store(inf.buffer, store_idx, red.identity()), data_guards, {}, info, sch)
    upd = _loops(st, inf, leaves[first:], update, inner_guards, children, info, sch)
    return _loops(st, inf, leaves[:first], seq(init, upd), outer_guards, children, info, sch)


def _uses(e: Expr, vars_: set) -> bool:
    found = []
    post_order(e, lambda n: found.append(n) if n in vars_ else None)
    return bool(found)


def _loops(st: Stage, inf: _StageInfo, loops: list, stmt: Stmt, guards: list, children: dict,
           info: dict, sch: Schedule) -> Stmt:
    """Wrap `stmt` in `loops`, each guard just inside the innermost loop whose variable it uses."""
    placed: dict[int, list] = {}
    for g in guards:
        used = [k for k, iv in enumerate(loops) if _uses(g, {iv})]
        placed.setdefault(max(used, default=-1), []).append(g)
    for k in range(len(loops) - 1, -1, -1):
        iv = loops[k]
        if k in placed:
            stmt = IfThenElse(_all(placed[k]), stmt)
        stmt = _attach(iv, st, stmt, children, info, sch)
        hints = [_prefetch(stmt, info[sch[t.op]].buffer, shift, offset, inf.leaf_ext[shift])
                 for t, at, shift, offset in st.prefetches if at is iv]
        stmt = seq(*hints, stmt)
        kind = LOOP_KIND.get(st.annotations.get(iv), "serial")
        tag = st.bindings.get(iv, "")
        stmt = For(iv, Const(inf.leaf_ext[iv], "int32"), "thread" if tag else kind, stmt, tag)
    if -1 in placed:
        stmt = IfThenElse(_all(placed[-1]), stmt)
    return stmt


def _prefetch(body: Stmt, buffer: Buffer, shift: IterVar, offset: int, extent: int) -> Stmt:
    """Prefetch hints for the elements of `buffer` that `body` loads, with loop `shift` moved `offset`
    iterations on (clamped to its range, so the address stays inside the buffer). Loops inside `body` that
    an index uses are kept (an unrolled loop over register blocks gives one hint per block); a vectorized
    loop is one cache line."""
    hints, seen = [], set()

    def visit(s: Stmt, loops: list) -> None:
        if isinstance(s, For):
            return visit(s.body, loops + [s])
        for child in (s.stmts if hasattr(s, "stmts") else [getattr(s, k) for k in ("then", "else_", "body")
                                                              if getattr(s, k, None) is not None]):
            visit(child, loops)
        for e in ([s.value, *s.indices] if isinstance(s, Store) else []):
            post_order(e, lambda n: found(n, loops) if isinstance(n, Load) and n.buffer is buffer else None)

    def found(load: Load, loops: list) -> None:
        moved = Const(offset, "int32") + shift
        fixed = {shift: binary("max", moved, 0) if offset < 0 else binary("min", moved, extent - 1)}
        fixed.update({f.var: Const(0, "int32") for f in loops if f.kind == "vectorize"})
        idx = tuple(substitute(i, fixed) for i in load.indices)
        key = repr(idx)
        if key in seen:
            return
        seen.add(key)
        stmt: Stmt = Evaluate(Call("prefetch", (Load(buffer, idx),), "int32"))
        for f in reversed(loops):
            if f.kind != "vectorize" and any(_uses(i, {f.var}) for i in idx):
                stmt = For(f.var, f.extent, f.kind, stmt)
        hints.append(stmt)

    visit(body, [])
    return seq(*hints)


def _attach(iv: IterVar, st: Stage, rest: Stmt, children: dict, info: dict, sch: Schedule) -> Stmt:
    kids = children.get((st, iv), [])
    if not kids:
        return rest
    nests = []
    for c in kids:  # a shared copy is fenced: written after every thread's last read, read after all writes
        nest = make_nest(sch, c, info, children)
        if c.scope == "shared":
            nests += [nest, BARRIER] if nests and nests[-1] is BARRIER else [BARRIER, nest, BARRIER]
        else:
            nests.append(nest)
    stmt = seq(*nests, rest)
    for c in reversed(kids):
        stmt = Allocate(info[c].buffer, stmt)
    return stmt


def _all(conds: list) -> Expr:
    out = conds[0]
    for c in conds[1:]:
        out = out & c
    return out


__all__ = ["lower_schedule"]
