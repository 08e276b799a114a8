"""Schedules: how each operation's loops are split, ordered, annotated and placed.

A schedule never changes what is computed. Each Stage starts with one loop per axis of its
operation (the root iter vars); primitives replace leaves by new iter vars and record the
relation (Split, Fuse) so lowering can recover every root index from the leaf loops.
"""

from __future__ import annotations

from dataclasses import dataclass

from lathe.errors import ScheduleError
from lathe.expr import IterVar, TensorRead, contains, index_of, transform
from lathe.te.tensor import ComputeOp, Operation, PlaceholderOp, Tensor

THREAD_TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z", "threadIdx.x", "threadIdx.y", "threadIdx.z", "vthread",
               "fragment")  # fragment: one GL fragment shader invocation per output element
SCOPES = ("global", "shared", "local")


@dataclass
class Split:
    parent: IterVar
    outer: IterVar
    inner: IterVar
    factor: int


@dataclass
class Fuse:
    outer: IterVar
    inner: IterVar
    fused: IterVar


class Stage:
    def __init__(self, op: Operation, schedule: Schedule):
        self.op = op
        self.schedule = schedule
        self.relations: list[Split | Fuse] = []
        self.annotations: dict[IterVar, str] = {}  # leaf -> "vectorize" | "unroll" | "parallel"
        self.bindings: dict[IterVar, str] = {}  # leaf -> thread tag
        self.attach = "root"  # "root" | "inline" | "at"
        self.attach_stage: Stage | None = None
        self.attach_ivar: IterVar | None = None
        self.scope = "global"
        self.prefetches: list[tuple] = []  # (tensor, at, shift, offset), see prefetch()
        self._reset_leaves()

    def _reset_leaves(self) -> None:
        op = self.op
        self.leaf_iter_vars: list[IterVar] = (list(op.axis) + list(op.reduce_axis)
                                              if isinstance(op, ComputeOp) else [])

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def root_iter_vars(self) -> list[IterVar]:
        return list(self.op.axis) + list(self.op.reduce_axis)

    def __repr__(self) -> str:
        return f"stage({self.name})"

    # ------------------------------------------------------------------ checks
    def _err(self, msg: str) -> ScheduleError:
        return ScheduleError(f"stage {self.name}: {msg}")

    def _compute(self, prim: str) -> None:
        if not isinstance(self.op, ComputeOp):
            raise self._err(f"{prim} is not possible on a placeholder (an input has no loops)")

    def _leaf(self, iv, prim: str) -> IterVar:
        self._compute(prim)
        if not isinstance(iv, IterVar):
            raise self._err(f"{prim} expects an axis (IterVar), got {iv!r}")
        if contains(self.leaf_iter_vars, iv):
            return iv
        owner = self.schedule._owner_of(iv)
        if owner is not None and owner is not self:
            raise self._err(f"{prim}: axis {iv.name} belongs to stage {owner.name}, not to this stage")
        if owner is self:
            raise self._err(f"{prim}: axis {iv.name} was already split or fused; use the axes that returned")
        raise self._err(f"{prim}: axis {iv.name} is not an axis of this stage")

    def _new(self, name: str, extent: int, kind: str) -> IterVar:
        iv = IterVar(name, extent, kind)
        self.schedule._owners[iv] = self
        return iv

    # ------------------------------------------------------------------ loop primitives
    def split(self, parent: IterVar, factor: int | None = None, nparts: int | None = None):
        """Split `parent` into (outer, inner); inner has `factor` iterations (or outer has `nparts`)."""
        self._leaf(parent, "split")
        if (factor is None) == (nparts is None):
            raise self._err(f"split of axis {parent.name} needs exactly one of factor= or nparts=")
        n = parent.extent.value
        given = factor if factor is not None else nparts
        if not isinstance(given, int) or given < 1:
            raise self._err(f"split of axis {parent.name}: factor/nparts must be a positive int, got {given!r}")
        if factor is None:
            factor = -(-n // nparts)
        outer = self._new(parent.name + ".outer", -(-n // factor), parent.kind)
        inner = self._new(parent.name + ".inner", factor, parent.kind)
        self.relations.append(Split(parent, outer, inner, factor))
        k = index_of(self.leaf_iter_vars, parent)
        self.leaf_iter_vars[k:k + 1] = [outer, inner]
        self._move_annotations(parent)
        return outer, inner

    def tile(self, x: IterVar, y: IterVar, x_factor: int, y_factor: int):
        xo, xi = self.split(x, x_factor)
        yo, yi = self.split(y, y_factor)
        self.reorder(xo, yo, xi, yi)
        return xo, yo, xi, yi

    def fuse(self, *axes: IterVar) -> IterVar:
        if len(axes) < 2:
            return self._leaf(axes[0], "fuse") if axes else None
        for a in axes:
            self._leaf(a, "fuse")
        pos = [index_of(self.leaf_iter_vars, a) for a in axes]
        if pos != list(range(pos[0], pos[0] + len(axes))):
            raise self._err("fuse needs adjacent axes, outer to inner: "
                            + ", ".join(a.name for a in axes) + " are not; reorder first")
        if len({a.kind for a in axes}) > 1:
            raise self._err("fuse cannot mix data and reduction axes: " + ", ".join(a.name for a in axes))
        fused = axes[0]
        for inner in axes[1:]:
            new = self._new(fused.name + "." + inner.name + ".fused",
                            fused.extent.value * inner.extent.value, inner.kind)
            self.relations.append(Fuse(fused, inner, new))
            k = index_of(self.leaf_iter_vars, fused)
            self.leaf_iter_vars[k:k + 2] = [new]
            fused = new
        return fused

    def reorder(self, *axes: IterVar) -> None:
        for a in axes:
            self._leaf(a, "reorder")
        if len(set(axes)) != len(axes):
            raise self._err("reorder lists an axis twice: " + ", ".join(a.name for a in axes))
        slots = sorted(index_of(self.leaf_iter_vars, a) for a in axes)
        for slot, a in zip(slots, axes):
            self.leaf_iter_vars[slot] = a

    def _annotate(self, iv: IterVar, kind: str) -> None:
        self._leaf(iv, kind)
        if iv.kind == "reduce" and kind in ("vectorize", "parallel"):
            raise self._err(f"cannot {kind} reduction axis {iv.name}: iterations of a reduction "
                            "depend on each other; vectorize or parallelize a data axis instead")
        self.annotations[iv] = kind

    def vectorize(self, iv: IterVar) -> None:
        self._annotate(iv, "vectorize")

    def unroll(self, iv: IterVar) -> None:
        self._annotate(iv, "unroll")

    def parallel(self, iv: IterVar) -> None:
        self._annotate(iv, "parallel")

    def bind(self, iv: IterVar, thread_tag: str) -> None:
        self._leaf(iv, "bind")
        if thread_tag not in THREAD_TAGS:
            raise self._err(f"bind axis {iv.name}: unknown thread tag {thread_tag!r}; use one of {THREAD_TAGS}")
        if iv.kind == "reduce" and thread_tag.startswith("block"):
            raise self._err(f"cannot bind reduction axis {iv.name} to {thread_tag}")
        self.bindings[iv] = thread_tag

    def prefetch(self, tensor: Tensor, at: IterVar, shift: IterVar, offset: int = 1) -> None:
        """At the start of each iteration of loop `at`, hint the CPU to fetch the elements of `tensor` that
        iteration reads when loop `shift` (an outer loop) is `offset` steps further on, so a stream of
        weights arrives in cache before it is needed. A hint only: results never change."""
        self._leaf(at, "prefetch")
        self._leaf(shift, "prefetch")
        self.prefetches.append((tensor, at, shift, offset))

    def _move_annotations(self, old: IterVar) -> None:
        if old in self.annotations or old in self.bindings:
            raise self._err(f"axis {old.name} is annotated ({self.annotations.get(old) or self.bindings[old]}); "
                            "split or fuse before annotating")

    # ------------------------------------------------------------------ placement
    def compute_at(self, parent: Stage, ivar: IterVar) -> None:
        """Compute this stage inside `parent`'s loop over `ivar`, just the region parent needs there."""
        self._compute("compute_at")
        if not isinstance(parent, Stage):
            raise self._err(f"compute_at expects a stage (s[T]), got {parent!r}")
        parent._leaf(ivar, "compute_at target")
        if parent is self:
            raise self._err("compute_at into itself")
        if self.op in self.schedule.outputs:
            raise self._err("an output of the schedule cannot be computed inside another stage")
        if not self.schedule._consumes(parent, self):
            raise self._err(f"compute_at: stage {parent.name} does not read {self.name}, so there is no "
                            f"region to compute at its axis {ivar.name}; attach a stage only inside a consumer")
        self.attach, self.attach_stage, self.attach_ivar = "at", parent, ivar

    def compute_inline(self) -> None:
        self._compute("compute_inline")
        if self.op.reduce_axis:
            axes = ", ".join(a.name for a in self.op.reduce_axis)
            raise self._err(f"compute_inline of a reduction (over axis {axes}) is not possible; use compute_at")
        if self.op in self.schedule.outputs:
            raise self._err("an output of the schedule cannot be inlined")
        self.attach, self.attach_stage, self.attach_ivar = "inline", None, None

    def compute_root(self) -> None:
        self._compute("compute_root")
        self.attach, self.attach_stage, self.attach_ivar = "root", None, None

    def set_scope(self, scope: str) -> None:
        if scope not in SCOPES:
            raise self._err(f"unknown storage scope {scope!r}; use one of {SCOPES}")
        self.scope = scope


class Schedule:
    def __init__(self, outputs: list[Operation]):
        self.outputs = list(outputs)
        self.stages: list[Stage] = []
        self._stage_of: dict[Operation, Stage] = {}
        self._owners: dict[IterVar, Stage] = {}
        for op in _post_order(self.outputs):
            self._add(Stage(op, self))

    def _add(self, stage: Stage, before: Stage | None = None) -> Stage:
        k = self.stages.index(before) if before is not None else len(self.stages)
        self.stages.insert(k, stage)
        self._stage_of[stage.op] = stage
        for iv in stage.leaf_iter_vars:
            self._owners[iv] = stage
        return stage

    def __getitem__(self, t: Tensor | Operation) -> Stage:
        op = t.op if isinstance(t, Tensor) else t
        if op not in self._stage_of:
            raise ScheduleError(f"{op.name} is not part of this schedule")
        return self._stage_of[op]

    def stage_of(self, op: Operation) -> Stage:
        return self[op]

    def _owner_of(self, iv: IterVar) -> Stage | None:
        return self._owners.get(iv)

    def readers(self, stage: Stage) -> list[Stage]:
        return [s for s in self.stages if any(self[t.op] is stage for t in s.op.input_tensors())]

    def _consumes(self, consumer: Stage, producer: Stage) -> bool:
        """Does `consumer` read `producer`, directly or through other stages?

        Reading through a stage that is not nested in the consumer's loop is caught at lowering,
        where the loop structure is final.
        """
        todo, seen = [self[t.op] for t in consumer.op.input_tensors()], set()
        while todo:
            s = todo.pop()
            if s is producer:
                return True
            if s not in seen:
                seen.add(s)
                todo.extend(self[t.op] for t in s.op.input_tensors())
        return False

    # ------------------------------------------------------------------ caches
    def cache_read(self, tensor: Tensor, scope: str, readers) -> Tensor:
        """Copy `tensor` into a new stage in `scope`; the given readers read the copy instead."""
        src = self[tensor]
        readers = [self[r] for r in (readers if isinstance(readers, (list, tuple)) else [readers])]
        for r in readers:
            if src not in [self[t.op] for t in r.op.input_tensors()]:
                raise ScheduleError(f"cache_read: stage {r.name} does not read {tensor.name}")
        cache_op = _copy_op(f"{tensor.name}.{scope}", tensor)
        stage = self._add(Stage(cache_op, self), before=min(readers, key=self.stages.index))
        stage.set_scope(scope)
        src_ops = {op for op, st in self._stage_of.items() if st is src}
        for r in readers:
            body = transform(r.op.body, lambda n: TensorRead(cache_op.output(), n.indices)
                             if isinstance(n, TensorRead) and n.tensor.op in src_ops else None)
            self._replace_op(r, ComputeOp(r.op.name, r.op.axis, body, r.op.tag, r.op.attrs))
        return cache_op.output()

    def cache_write(self, tensor: Tensor, scope: str) -> Tensor:
        """Compute `tensor` into a new stage in `scope`; the original stage becomes a copy from it."""
        st = self[tensor]
        st._compute("cache_write")
        if st.relations or st.annotations or st.bindings:
            raise st._err("cache_write must come before split/fuse/annotations of this stage")
        old = st.op
        cache_op = ComputeOp(f"{old.name}.{scope}", old.axis, old.body, old.tag, old.attrs)
        stage = self._add(Stage(cache_op, self), before=st)
        stage.set_scope(scope)
        self._replace_op(st, _copy_op(old.name, cache_op.output(), old.tag, old.attrs))
        return cache_op.output()

    def _replace_op(self, stage: Stage, new_op: ComputeOp) -> None:
        stage.op = new_op
        self._stage_of[new_op] = stage
        if not stage.relations:
            stage._reset_leaves()
        for iv in stage.leaf_iter_vars:
            self._owners[iv] = stage


def _copy_op(name: str, src: Tensor, tag: str = "", attrs: dict | None = None) -> ComputeOp:
    axis = [IterVar(f"ax{k}", d) for k, d in enumerate(src.shape)]
    return ComputeOp(name, axis, TensorRead(src, tuple(axis)), tag, attrs)


def _post_order(outputs: list[Operation]) -> list[Operation]:
    order: list[Operation] = []
    seen: set = set()
    on_path: set = set()

    def visit(op: Operation) -> None:
        if op in seen:
            return
        if op in on_path:
            raise ScheduleError(f"the computation is cyclic at {op.name}")
        on_path.add(op)
        for t in op.input_tensors():
            visit(t.op)
        on_path.discard(op)
        seen.add(op)
        order.append(op)

    for op in outputs:
        visit(op)
    return order


def create_schedule(outputs) -> Schedule:
    """A default schedule (one loop nest per operation, in order) for the given output tensors."""
    outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    for t in outs:
        if not isinstance(t, Tensor):
            raise TypeError(f"create_schedule takes tensors, got {t!r}")
        if isinstance(t.op, PlaceholderOp):
            raise ScheduleError(f"{t.name} is a placeholder; schedule the tensors computed from it")
    return Schedule([t.op for t in outs])
