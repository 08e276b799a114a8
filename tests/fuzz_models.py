"""Fuzz lathe's model path: mutated ONNX models through load, check, compile for `llvm` and one run.

    python -m tests.fuzz_models --count 10000 --seed 0 --jobs 2 [--save DIR] [--full-zoo]

Seeds are the ONNX node tests in lathe's operator set and a few small zoo-like CNNs. Each case is
one seed with one to three mutations: byte edits of the serialized proto, or structure-aware edits
of the ModelProto (attribute values, dims, initializers, node inputs/outputs, cycles, op types,
domains, opset versions). Each runs in a long-lived worker process with RLIMIT_AS at 2 GiB and a
10 s deadline; a worker that dies or hangs is replaced. Outcomes: ok, big (compiled, but its
kernels' loop nests exceed RUN_BUDGET iterations or its inputs and outputs half the memory limit,
so it is not run), a lathe error (its class),
and the bad ones: signal, hang, memory (MemoryError), foreign (any exception outside LatheError).
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import random
import signal
import sys
import time
import traceback
from multiprocessing.connection import wait

import numpy as np

BAD = ("signal", "hang", "memory", "foreign")
DEADLINE_S = 10.0
MEMORY_LIMIT = 2 << 30


# ---------------------------------------------------------------- seeds

def _small_cnn(seed: int, blocks: int = 1) -> bytes:
    """A few ResNet layers on a 32x32 image: stem, maxpool, basic blocks, classifier."""
    from lathe.zoo.builder import GraphBuilder
    from lathe.zoo.resnet import _basic_block, _conv_bn, _Init
    from onnx import TensorProto, helper, numpy_helper

    g, init = GraphBuilder("small_cnn"), _Init(seed)
    h = g.relu(_conv_bn(g, init, "input", "stem", 3, 8, 3, 2))
    h = g.node("MaxPool", [h], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = 8
    for b in range(blocks):
        h = _basic_block(g, init, h, f"layer{b}", c, c * 2 if b else c, 2 if b else 1)
        c = c * 2 if b else c
    g.classifier(h, init.rng.normal(size=(10, c)), init.rng.normal(size=10), "logits")
    graph = helper.make_graph(g.nodes, "small_cnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                   [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
                              [numpy_helper.from_array(v, k) for k, v in g.weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _mlp() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w1, w2 = rng.normal(size=(16, 32)).astype("float32"), rng.normal(size=(32, 4)).astype("float32")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Sigmoid", ["h"], ["s"]),
             helper.make_node("Reshape", ["s", "shape"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
             helper.make_node("Transpose", ["t"], ["u"], perm=[1, 0]),
             helper.make_node("Reshape", ["u", "shape2"], ["v"]), helper.make_node("MatMul", ["v", "w2"], ["m"]),
             helper.make_node("Softmax", ["m"], ["y"], axis=-1),
             helper.make_node("ReduceMean", ["y"], ["z"], axes=[1], keepdims=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 1])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
                               numpy_helper.from_array(np.array([4, 16], np.int64), "shape"),
                               numpy_helper.from_array(np.array([2, 32], np.int64), "shape2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def seeds(full_zoo: bool = False) -> list[tuple[str, bytes]]:
    """(name, serialized model): the node tests lathe's operator set covers (inputs lathe needs at compile
    time made initializers from the test's data), and small CNNs."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from conformance import compile_time_inputs, load_case, select_tests
    from onnx import numpy_helper

    out = []
    for d in select_tests():
        model, feed, _ = load_case(d)
        frozen = compile_time_inputs(model) & set(feed)  # Reshape's shape, Slice's starts, ...: as lathe needs them
        for name in frozen:
            vi = next(vi for vi in model.graph.input if vi.name == name)
            model.graph.input.remove(vi)
            model.graph.initializer.append(numpy_helper.from_array(feed[name], name))
        out.append((os.path.basename(d), model.SerializeToString()))
    out += [("zoo_small_cnn", _small_cnn(0)), ("zoo_small_cnn2", _small_cnn(1, blocks=2)), ("zoo_mlp", _mlp())]
    if full_zoo:
        from lathe.zoo.resnet import resnet18

        out.append(("zoo_resnet18", resnet18().SerializeToString()))
    return out


# ---------------------------------------------------------------- mutators

INTS = [0, 1, -1, 2, -2, 3, 7, 64, 2**31 - 1, 2**31, -2**31, 2**32, 2**62, -2**63, 2**63 - 1, 10**9]
FLOATS = [0.0, -0.0, 1.0, -1.0, 1e-45, 1e38, -1e38, float("nan"), float("inf"), float("-inf"), 0.5]
ATTR_NAMES = ["axis", "axes", "perm", "kernel_shape", "pads", "strides", "dilations", "group", "keepdims", "alpha",
              "beta", "epsilon", "transA", "transB", "mode", "auto_pad", "to", "split", "value", "ceil_mode",
              "output_padding", "output_shape", "coordinate_transformation_mode", "count_include_pad", "min", "max",
              "starts", "ends", "allowzero", "storage_order", "num_outputs", "blocksize"]
OPS = ["Conv", "Relu", "Add", "MatMul", "Gemm", "Reshape", "Transpose", "Concat", "Split", "Slice", "Gather", "Pad",
       "Resize", "Softmax", "MaxPool", "AveragePool", "ReduceSum", "Cast", "Squeeze", "Unsqueeze", "Flatten",
       "ConvTranspose", "BatchNormalization", "Clip", "Shape", "Constant", "ConstantOfShape", "Identity",
       "NoSuchOp", "Loop", "If", ""]


def _int(r: random.Random) -> int:
    return r.choice(INTS) if r.random() < 0.7 else r.randint(-10, 10)


def _ints(r: random.Random) -> list[int]:
    return [] if r.random() < 0.15 else [_int(r) for _ in range(r.choice([1, 2, 3, 4, 8, 20]))]


def mutate_attribute(m, r: random.Random) -> None:
    from onnx import AttributeProto, helper

    nodes = list(m.graph.node)
    n = r.choice(nodes)
    attrs = list(n.attribute)
    if attrs and r.random() < 0.6:  # a hostile value of the declared type: gets past the schema into the op
        a = r.choice(attrs)
        if a.type == AttributeProto.INT:
            a.i = _int(r)
        elif a.type == AttributeProto.INTS:
            del a.ints[:]
            a.ints.extend(_ints(r) if r.random() < 0.5 else [_int(r) if r.random() < 0.3 else v for v in
                                                            helper.get_attribute_value(a) or [1, 1]])
        elif a.type == AttributeProto.FLOAT:
            a.f = r.choice(FLOATS)
        elif a.type == AttributeProto.STRING:
            a.s = r.choice([b"", b"NOTSET", b"SAME_LOWER", b"VALID", b"nearest", b"cubic", b"bogus", b"\xff"])
        return
    if attrs and r.random() < 0.7:
        a = r.choice(attrs)
        name = a.name
        n.attribute.remove(a)
    else:
        name = r.choice(ATTR_NAMES)
        for a in list(n.attribute):
            if a.name == name:
                n.attribute.remove(a)
    kind = r.choice(["int", "ints", "float", "floats", "string", "tensor", "empty", "drop", "dup"])
    if kind == "drop":
        return
    if kind == "int":
        n.attribute.append(helper.make_attribute(name, _int(r)))
    elif kind == "ints":
        n.attribute.append(helper.make_attribute(name, _ints(r)) if r.random() < 0.9 else
                           helper.make_attribute(name, [_int(r)] * 100))
    elif kind == "float":
        n.attribute.append(helper.make_attribute(name, r.choice(FLOATS)))
    elif kind == "floats":
        n.attribute.append(helper.make_attribute(name, [r.choice(FLOATS) for _ in range(r.randint(1, 4))]))
    elif kind == "string":
        n.attribute.append(helper.make_attribute(name, r.choice(["", "NOTSET", "SAME_UPPER", "linear", "cubic",
                                                                 "\x00", "half_pixel", "x" * 1000])))
    elif kind == "tensor":
        from onnx import numpy_helper

        arr = r.choice([np.zeros((0,), np.float32), np.array(np.nan, np.float32), np.arange(6, dtype=np.int64),
                        np.ones((2, 3), np.float64), np.array([True]), np.array(2**40, np.int64)])
        n.attribute.append(helper.make_attribute(name, numpy_helper.from_array(arr)))
    elif kind == "empty":  # declared type, no value
        n.attribute.append(AttributeProto(name=name, type=r.choice([AttributeProto.INTS, AttributeProto.INT,
                                                                    AttributeProto.FLOATS, AttributeProto.TENSOR,
                                                                    AttributeProto.STRING, AttributeProto.GRAPH,
                                                                    AttributeProto.UNDEFINED])))
    else:  # the same attribute twice
        n.attribute.append(helper.make_attribute(name, _int(r)))
        n.attribute.append(helper.make_attribute(name, _ints(r) or [1]))


DIMS = [0, -1, 1, 2, 3, 5, 1 << 20, 1 << 31, 1 << 40, -(1 << 40)]


def mutate_dims(m, r: random.Random) -> None:
    vis = list(m.graph.input) + list(m.graph.output)
    vi = r.choice(vis)
    shape = vi.type.tensor_type.shape
    choice = r.random()
    if choice < 0.55 and shape.dim:
        d = r.choice(shape.dim)
        if r.random() < 0.15:
            d.dim_param = "N"
        else:
            d.dim_value = r.choice(DIMS)
    elif choice < 0.7 and shape.dim:  # one dim fewer, or a scalar
        del shape.dim[r.randrange(len(shape.dim)) if r.random() < 0.7 else slice(None)]
    elif choice < 0.85:
        for _ in range(r.choice([1, 1, 2, 20])):
            shape.dim.add().dim_value = r.choice(DIMS[1:6])
    elif choice < 0.92:
        vi.type.tensor_type.ClearField("shape")
    else:
        vi.type.tensor_type.elem_type = r.randint(0, 25)


def mutate_initializer(m, r: random.Random) -> None:
    from onnx import TensorProto

    g = m.graph
    if not g.initializer:
        return mutate_dims(m, r)
    t = r.choice(g.initializer)
    choice = r.random()
    if choice < 0.2:
        t.data_type = r.randint(0, 25)
    elif choice < 0.4:
        if t.dims and r.random() < 0.6:
            t.dims[r.randrange(len(t.dims))] = r.choice(DIMS)
        else:
            t.dims.append(r.choice(DIMS[1:6]))
    elif choice < 0.55 and t.raw_data:
        raw = t.raw_data
        t.raw_data = raw[: r.randrange(len(raw))] if r.random() < 0.7 else raw + raw[:7]
    elif choice < 0.75:  # hostile values in an integer tensor: shapes, axes, pads, indices
        if t.data_type in (TensorProto.INT64, TensorProto.INT32):
            n = max(1, int(np.prod(t.dims)) if t.dims else 1)
            n = min(n, 64)
            dt = np.int64 if t.data_type == TensorProto.INT64 else np.int32
            info = np.iinfo(dt)
            vals = np.array([max(min(_int(r), info.max), info.min) for _ in range(n)], dt)
            t.ClearField("int64_data")
            t.ClearField("int32_data")
            t.raw_data = vals.tobytes()
            del t.dims[:]
            t.dims.extend([n] if len(vals) > 1 or r.random() < 0.5 else [])
        elif t.raw_data:
            vals = np.frombuffer(t.raw_data, np.uint8).copy()
            vals[r.randrange(len(vals))] = 0xFF  # NaN-ish patterns in floats
            t.raw_data = vals.tobytes()
    elif choice < 0.85:
        t.ClearField("raw_data")
        t.float_data.extend([1.0] * r.choice([0, 1, 3]))
    elif choice < 0.92:  # same name twice
        g.initializer.add().CopyFrom(t)
        g.initializer[-1].dims.append(2)
    else:
        t.name = r.choice(["", g.input[0].name if g.input else "x", "nope"])


def _names(m) -> list[str]:
    g = m.graph
    out = [vi.name for vi in g.input] + [t.name for t in g.initializer]
    for n in g.node:
        out += list(n.output)
    return out or ["x"]


def mutate_wiring(m, r: random.Random) -> None:
    """Node inputs/outputs dropped, duplicated, renamed; cycles and self-loops; wrong output counts."""
    g = m.graph
    k = r.randrange(len(g.node))
    n = g.node[k]
    names = _names(m)
    choice = r.randrange(9)
    if choice == 0 and n.input:
        del n.input[r.randrange(len(n.input))]
    elif choice == 1:
        n.input.append(r.choice(names + [""]))
    elif choice == 2 and n.input:
        n.input[r.randrange(len(n.input))] = r.choice(["", "missing", *names])
    elif choice == 3 and n.output:  # self-loop
        n.input.append(n.output[0]) if r.random() < 0.5 or not n.input else n.input.__setitem__(0, n.output[0])
    elif choice == 4 and k + 1 < len(g.node) and n.input:  # cycle through a later node
        later = g.node[r.randrange(k + 1, len(g.node))]
        if later.output:
            n.input[0] = later.output[0]
    elif choice == 5:  # wrong output counts
        if r.random() < 0.5 and n.output:
            del n.output[-1]
        else:
            n.output.extend([f"extra{j}" for j in range(r.choice([1, 2, 5]))])
    elif choice == 6 and n.output:  # two producers of one name
        n.output[0] = r.choice(names)
    elif choice == 7:  # graph inputs/outputs dropped, duplicated, renamed
        seq = g.input if r.random() < 0.5 else g.output
        if seq and r.random() < 0.4:
            del seq[r.randrange(len(seq))]
        elif seq and r.random() < 0.5:
            seq.add().CopyFrom(seq[r.randrange(len(seq))])
        elif seq:
            seq[r.randrange(len(seq))].name = r.choice(["", "missing", *names])
    else:  # a node repeated or removed
        if r.random() < 0.5:
            g.node.add().CopyFrom(n)
        elif len(g.node) > 1:
            del g.node[k]


def mutate_op(m, r: random.Random) -> None:
    g = m.graph
    choice = r.random()
    if choice < 0.45:
        r.choice(g.node).op_type = r.choice(OPS)
    elif choice < 0.6:
        r.choice(g.node).domain = r.choice(["ai.onnx.ml", "com.microsoft", "x", "ai.onnx", ""])
    else:
        if not m.opset_import:
            m.opset_import.add()
        op = r.choice(m.opset_import)
        op.version = r.choice([0, 1, 6, 7, 9, 10, 11, 12, 13, 17, 18, 21, 99, -1, 2**62])
        if r.random() < 0.2:
            m.ClearField("opset_import")
        elif r.random() < 0.2:
            m.ir_version = r.choice([0, 1, 3, 99, -1])


STRUCTURAL = [mutate_attribute, mutate_dims, mutate_initializer, mutate_wiring, mutate_op]


def mutate_bytes(data: bytes, r: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(r.choice([1, 1, 2, 4, 16])):
        if not buf:
            break
        choice, pos = r.random(), r.randrange(len(buf))
        if choice < 0.5:
            buf[pos] ^= 1 << r.randrange(8)
        elif choice < 0.7:
            buf[pos] = r.choice([0x00, 0xFF, 0x7F, 0x80, r.randrange(256)])
        elif choice < 0.8:
            buf[pos:pos] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
        elif choice < 0.9:
            del buf[pos:pos + r.randint(1, 16)]
        else:
            del buf[r.randrange(len(buf)):]
    return bytes(buf)


def make_case(seed_list: list, seed: int, index: int) -> tuple[str, bytes]:
    """The index-th case of a run: deterministic in (seed, index)."""
    from onnx import ModelProto

    r = random.Random(seed * 1_000_003 + index)
    zoo = [s for s in seed_list if s[0].startswith("zoo_")]
    name, data = r.choice(zoo if zoo and r.random() < 0.15 else seed_list)  # the CNNs are a few of 400 seeds
    if name == "zoo_resnet18" or r.random() < 0.3:
        return f"{name}/bytes", mutate_bytes(data, r)
    for _ in range(5):  # a few mutations produce values protobuf refuses to serialize; draw again
        m = ModelProto()
        m.ParseFromString(data)
        used = []
        try:
            for _ in range(r.choice([1, 1, 2, 3])):
                fn = r.choice(STRUCTURAL)
                fn(m, r)
                used.append(fn.__name__.removeprefix("mutate_"))
            return f"{name}/{'+'.join(used)}", m.SerializeToString()
        except (ValueError, TypeError, OverflowError, IndexError):
            continue
    return f"{name}/bytes", mutate_bytes(data, r)


# ---------------------------------------------------------------- workers

RUN_BUDGET = 2e9  # loop iterations; a model that compiles but would compute longer than ~10 s is not run,
# nor one whose inputs and outputs (made here, then copied out) would take half the memory limit


def loop_work(data: bytes) -> int:
    """Iterations of every kernel's loop nest (output elements x reduction extents), from the TE of each node."""
    from lathe import ops
    from lathe.frontend.onnx import build_op, load_onnx
    from lathe.te.tensor import ComputeOp

    g = load_onnx(data)
    total = 0
    for n in g.nodes:
        _, outs = build_op(n, [(g.values[i].shape, g.values[i].dtype) for i in n.inputs], ops.OPS, g.opset)
        seen, stack = set(), list(outs)
        while stack:
            t = stack.pop()
            if id(t.op) in seen or not isinstance(t.op, ComputeOp):
                continue
            seen.add(id(t.op))
            extents = [int(getattr(ax.extent, "value", 1)) for ax in t.op.reduce_axis]
            total += int(np.prod([max(int(d), 1) for d in t.shape] + extents, dtype=np.float64))
            stack += t.op.input_tensors()
    return total


def run_case(data: bytes) -> tuple:
    """(outcome, detail) for one model: compile for llvm and, if it compiles, run it once."""
    import lathe

    try:
        mod = lathe.compile(data, target="llvm")
        work = loop_work(data)
        io_bytes = sum(int(np.prod(io["shape"])) * np.dtype(io["dtype"]).itemsize
                       for io in mod.spec["inputs"] + mod.spec["outputs"])
        if work > RUN_BUDGET or 2 * io_bytes > MEMORY_LIMIT // 2:  # inputs made here, outputs copied out
            return "big", f"compiled; not run: {work:.2g} loop iterations, {io_bytes:,} bytes of inputs and outputs"
        rng = np.random.default_rng(0)
        feed = {}
        for spec in mod.spec["inputs"]:
            dt = np.dtype(spec["dtype"])
            if dt.kind == "f":
                feed[spec["name"]] = rng.standard_normal(spec["shape"], np.float32).astype(dt, copy=False)
            else:  # small ints, as indices would be; bools 0 and 1
                low, high = (-3 if dt.kind == "i" else 0), (2 if dt.kind == "b" else 4)
                feed[spec["name"]] = rng.integers(low, high, spec["shape"], dtype=dt)
        mod.run(feed)
        return "ok", ""
    except lathe.LatheError as err:
        return "lathe", type(err).__name__
    except MemoryError as err:
        return "memory", f"MemoryError: {err}"[:300]
    except BaseException as err:  # noqa: BLE001 - anything outside lathe's family is a finding
        frames = traceback.extract_tb(err.__traceback__)
        top = next((f for f in reversed(frames) if "lathe" in f.filename), frames[-1] if frames else None)
        where = f"{os.path.relpath(top.filename)}:{top.lineno} in {top.name}" if top else "?"
        return "foreign", f"{type(err).__name__}: {str(err)[:200]} @ {where}"


def _vm_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _worker(conn) -> None:
    import resource

    # MEMORY_LIMIT on top of the address space the worker already maps (lathe, NumPy and LLVM
    # reserve about 1 GiB of it, mostly untouched)
    limit = _vm_bytes() + MEMORY_LIMIT
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    np.seterr(all="ignore")  # NaN weights folded at import warn on every case; the outcome is what counts
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        outcome, detail = run_case(data)
        conn.send((outcome, detail, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


class Pool:
    """Long-lived worker processes; each case gets DEADLINE_S, a hung or dead worker is replaced."""

    def __init__(self, jobs: int):
        # not plain fork: a parent that has run OpenMP kernels (pytest) leaves libgomp's pool locked in a forked
        # child, so parallel kernels there hang. The fork server is a fresh process that has only imported lathe.
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(["lathe", "lathe.ops", "numpy"])
        self.workers = [self._start() for _ in range(jobs)]
        self.peak_rss = 0

    def _start(self) -> dict:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        p.start()
        child.close()
        return {"proc": p, "conn": parent, "case": None, "t0": 0.0}

    def _replace(self, w: dict) -> dict:
        if w["proc"].is_alive():
            w["proc"].kill()
        w["proc"].join()
        w["conn"].close()
        return self._start()

    def run(self, cases, on_result) -> None:
        pending = iter(cases)
        busy = 0
        exhausted = False
        while True:
            for w in self.workers:
                if w["case"] is None and not exhausted:
                    case = next(pending, None)
                    if case is None:
                        exhausted = True
                        continue
                    w["case"], w["t0"] = case, time.monotonic()
                    w["conn"].send_bytes(case[2])
                    busy += 1
            if busy == 0:
                return
            now = time.monotonic()
            timeout = max(0.01, min(w["t0"] + DEADLINE_S - now for w in self.workers if w["case"] is not None))
            ready = wait([w["conn"] for w in self.workers if w["case"] is not None], timeout)
            now = time.monotonic()
            for k, w in enumerate(self.workers):
                if w["case"] is None:
                    continue
                case, elapsed = w["case"], now - w["t0"]
                if w["conn"] in ready:
                    try:
                        outcome, detail, rss = w["conn"].recv()
                        self.peak_rss = max(self.peak_rss, rss)
                        if elapsed > DEADLINE_S:  # finished, but late
                            outcome, detail = "hang", f"finished after {elapsed:.1f} s ({outcome} {detail})"
                    except (EOFError, OSError):
                        w["proc"].join(1)
                        code = w["proc"].exitcode
                        name = signal.Signals(-code).name if code is not None and code < 0 else f"exit {code}"
                        outcome, detail = "signal", name
                        self.workers[k] = self._replace(w)
                elif elapsed > DEADLINE_S:
                    outcome, detail = "hang", f"over {DEADLINE_S:.0f} s"
                    self.workers[k] = self._replace(w)
                else:
                    continue
                self.workers[k]["case"] = None
                busy -= 1
                on_result(case, outcome, detail, elapsed)

    def close(self) -> None:
        for w in self.workers:
            w["conn"].close()
            w["proc"].join(5)
            if w["proc"].is_alive():
                w["proc"].kill()


def fuzz(count: int, seed: int = 0, jobs: int = 2, save: str | None = None, full_zoo: bool = False,
         verbose: bool = False) -> dict:
    """Run `count` cases; returns {"outcomes": Counter, "errors": Counter, "findings": [...], "seconds": s}."""
    seed_list = seeds(full_zoo)
    outcomes, errors, findings, by_seed, slowest = collections.Counter(), collections.Counter(), [], {}, [0.0]
    t0 = time.time()

    def on_result(case, outcome, detail, elapsed):
        index, name, data = case
        slowest[0] = max(slowest[0], elapsed)
        outcomes[outcome] += 1
        family = name.split("/")[0] if name.startswith("zoo_") else "node tests"
        by_seed.setdefault(family, collections.Counter())[outcome] += 1
        if outcome == "lathe":
            errors[detail] += 1
        if outcome in BAD:
            findings.append((index, name, outcome, detail))
            print(f"  case {index} ({name}): {outcome}: {detail}", flush=True)
            if save:
                os.makedirs(save, exist_ok=True)
                with open(os.path.join(save, f"case{index}_{outcome}.onnx"), "wb") as fh:
                    fh.write(data)
        done = sum(outcomes.values())
        if verbose and done % 500 == 0:
            print(f"  {done} cases, {time.time() - t0:.0f} s: {dict(outcomes)}", flush=True)

    cases = ((i, *make_case(seed_list, seed, i)) for i in range(count))
    pool = Pool(jobs)
    try:
        pool.run(cases, on_result)
    finally:
        pool.close()
    return {"outcomes": outcomes, "errors": errors, "findings": findings, "seconds": time.time() - t0,
            "seeds": len(seed_list), "peak_rss": pool.peak_rss, "by_seed": by_seed, "slowest": slowest[0]}


def summary(result: dict) -> str:
    o = result["outcomes"]
    lines = [f"fuzzed models: {sum(o.values())} from {result['seeds']} seeds in {result['seconds']:.0f} s: "
             f"ok {o['ok']} (+{o['big']} compiled but too big to run), lathe errors {o['lathe']}, "
             + ", ".join(f"{b} {o[b]}" for b in BAD)
             + f"; peak worker RSS {result['peak_rss'] / 2**20:.0f} MiB; slowest case {result['slowest']:.1f} s",
             "lathe errors by class: " + ", ".join(f"{k} {v}" for k, v in result["errors"].most_common()),
             "by seed: " + "; ".join(f"{k} {sum(c.values())} ({', '.join(f'{o} {n}' for o, n in c.most_common())})"
                                     for k, c in sorted(result["by_seed"].items()))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--save", help="write each bad case's model here")
    ap.add_argument("--full-zoo", action="store_true", help="also byte-mutate the full ResNet-18")
    ap.add_argument("--case", type=int, help="run one case in this process (to debug it)")
    args = ap.parse_args(argv)
    if args.case is not None:
        name, data = make_case(seeds(args.full_zoo), args.seed, args.case)
        print(name, run_case(data))
        return 0
    result = fuzz(args.count, args.seed, args.jobs, args.save, args.full_zoo, verbose=True)
    print(summary(result))
    return 1 if any(result["outcomes"][b] for b in BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
