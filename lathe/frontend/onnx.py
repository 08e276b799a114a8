"""ONNX -> lathe graph IR.

Shapes and dtypes come from the operator library itself: each node's tensor expression is
built over placeholders, and its output tensors carry the shapes. Nodes whose operands are all
constant are folded by compiling and running that same expression, so there is one definition
of every operator.
"""

from __future__ import annotations

import os
import stat

import numpy as np

from dataclasses import dataclass

from lathe.errors import LatheError, ModelError
from lathe.graph.ir import Graph, Node, Value, topo_sort

MAX_FOLD_ELEMENTS = 1 << 24  # larger constant results are computed at run time instead
FOLDED_HERE = ("Constant", "Shape", "Size")


def _onnx():
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - onnx is a core dependency
        raise ModelError("reading ONNX models needs the `onnx` package: pip install onnx") from err
    return onnx


@dataclass
class Limits:
    """What lathe accepts from a model file, checked before anything is allocated.

    Raise one with `lathe.compile(model, limits=lathe.Limits(nodes=10**6))` for a model you trust."""

    file_bytes: int = 4 << 30  # the model file (protobuf itself stops at 2 GiB)
    nodes: int = 200_000
    tensor_elements: int = 1 << 31  # any one tensor: input, initializer or intermediate
    initializer_bytes: int = 4 << 30  # all initializers together, as their dims claim
    rank: int = 16

    def exceeded(self, what: str, limit: str) -> ModelError:
        return ModelError(f"{what}: over the limit {limit}={getattr(self, limit):,}; "
                          f"pass limits=lathe.Limits({limit}=...) to lathe.compile if the model is trusted")

    def check_shape(self, what: str, shape: tuple) -> int:
        """The shape's element count, once its rank and size are within the limits."""
        if len(shape) > self.rank:
            raise self.exceeded(f"{what} has rank {len(shape)}", "rank")
        n = 1
        for d in shape:
            n *= max(int(d), 0)
        if n > self.tensor_elements:
            raise self.exceeded(f"{what} of shape {tuple(shape)} has {n:,} elements", "tensor_elements")
        return n


def parse(model, limits: Limits | None = None) -> object:
    """A ModelProto from a path, bytes or a ModelProto, or a ModelError saying what is wrong."""
    onnx = _onnx()
    limits = limits or Limits()
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ModelError(f"model file {path!r} does not exist")
        size = os.path.getsize(path)
        if size > limits.file_bytes:
            raise limits.exceeded(f"model file {path!r} is {size:,} bytes", "file_bytes")
        with open(path, "rb") as fh:
            model = fh.read()
        where = f"file {path!r}"
    elif isinstance(model, (bytes, bytearray, memoryview)):
        where = f"{len(model)} bytes"
        if len(model) > limits.file_bytes:
            raise limits.exceeded(f"the model is {len(model):,} bytes", "file_bytes")
    else:
        raise ModelError(f"cannot read a model from {type(model).__name__}; pass a path, bytes or onnx.ModelProto")
    try:
        proto = onnx.ModelProto()
        proto.ParseFromString(bytes(model))
    except Exception as err:  # protobuf raises its own DecodeError and others
        raise ModelError(f"{where} is not a valid ONNX model (protobuf could not parse it: {err})") from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise ModelError(f"{where} holds no ONNX graph (empty or not an ONNX file)")
    return proto


def _check_names(g, where: str = "the model") -> None:
    """Protobuf hands back a string field that is not valid UTF-8 as bytes; every name must be text."""
    for k, n in enumerate(g.node):
        names = [n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)]
        if not all(isinstance(v, str) for v in names):
            raise ModelError(f"{where}: node #{k} has a name, op type, input, output or attribute name that is "
                             f"not valid UTF-8: {[v for v in names if not isinstance(v, str)][0]!r:.80}")
    for field in ("input", "output", "initializer", "value_info"):
        bad = [v.name for v in getattr(g, field) if not isinstance(v.name, str)]
        if bad:
            raise ModelError(f"{where}: a graph {field} name is not valid UTF-8: {bad[0]!r:.80}")


def _itemsize(elem_type: int) -> int:
    try:
        return np.dtype(np_dtype(elem_type)).itemsize
    except ModelError:
        return 1


def np_dtype(elem_type: int) -> str:
    """The NumPy name of an ONNX element type that lathe computes with, or a ModelError."""
    from lathe.expr import SCALAR_DTYPES

    onnx = _onnx()
    try:
        name = str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        name = None
    if name not in SCALAR_DTYPES:
        raise ModelError(f"ONNX element type {elem_type} ({name or 'unknown'}) is not supported; "
                         f"lathe computes with {', '.join(SCALAR_DTYPES)}")
    return name


def _attr_value(a, op: str):
    onnx = _onnx()
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, onnx.TensorProto):
        if v.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelError(f"op {op}: attribute {a.name} keeps its tensor in an external file; "
                             "only initializers may use external data")
        return onnx.numpy_helper.to_array(v)
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    if isinstance(v, (onnx.GraphProto, list)) and a.type in (a.GRAPH, a.GRAPHS):
        raise ModelError(f"op {op}: attribute {a.name} is a subgraph; control flow is not supported")
    if isinstance(v, list):
        return list(v)
    return v


ONNX_TYPE = {"float32": "tensor(float)", "float16": "tensor(float16)", "float64": "tensor(double)",
             "int32": "tensor(int32)", "int64": "tensor(int64)", "int8": "tensor(int8)", "uint8": "tensor(uint8)",
             "bool": "tensor(bool)"}
DTYPE_ATTRS = {("Cast", "to"), ("EyeLike", "dtype"), ("CastLike", "to")}


def _attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        v = _attr_value(a, node.op_type)
        if (node.op_type, a.name) in DTYPE_ATTRS:
            v = np_dtype(v)
        out[a.name] = v
    return out


def _dims(vi, shapes: dict) -> tuple:
    name = vi.name
    if name in shapes:
        return tuple(int(d) for d in shapes[name])
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        raise ModelError(f"input {name!r} has no shape in the model; pass shapes={{{name!r}: (...)}}")
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(d.dim_value)
        else:
            dims.append(1)  # a symbolic dimension (batch): static shapes are a compile-time choice
    return tuple(dims)


def _external_bytes(init, base_dir: str | None, want: int) -> bytes:
    """The raw bytes of an initializer kept in an external file, read only from inside the model's folder.

    Refused (ONNX's loader once allowed these, CVE-2022-25882 and CVE-2024-27318): a model read
    from bytes, absolute paths, drive letters, `..`, NUL bytes, and symlinks or hard links whose
    target lies outside the folder."""
    info = {e.key: e.value for e in init.external_data}
    loc = info.get("location", "")
    what = f"initializer {init.name!r}: external data location {loc!r}"
    if base_dir is None:
        raise ModelError(f"{what}: the model was not read from a file, so there is no folder to read it from; "
                         "load the model by its path")
    parts = loc.replace("\\", "/").split("/")
    if (not loc or "\0" in loc or os.path.isabs(loc) or loc.startswith(("/", "\\")) or ":" in loc
            or ".." in parts):
        raise ModelError(f"{what} must be a plain relative path inside the model's folder")
    root = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(root, loc))
    if os.path.commonpath([root, path]) != root:
        raise ModelError(f"{what} leads outside the model's folder (through a link)")
    try:
        fd = _open_beneath(root, os.path.relpath(path, root))
    except OSError as err:  # ELOOP/ENOTDIR: a link was swapped in after the path was resolved
        raise ModelError(f"{what} cannot be read: {err}") from None
    try:
        st = os.fstat(fd)  # every check on the file that is open, not on a name that may since point elsewhere
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(f"{what} is not a regular file")
        if st.st_nlink > 1:
            raise ModelError(f"{what} is a hard link; refusing it, as it may be a file from elsewhere")
        offset = int(info.get("offset", 0))
        length = int(info.get("length", st.st_size - offset))
        if offset < 0 or length < 0 or offset + length > st.st_size:
            raise ModelError(f"{what}: offset {offset} and length {length} lie beyond the file's {st.st_size} bytes")
        if length != want:  # checked before reading: the file may be far larger than the tensor
            raise ModelError(f"{what}: {length} bytes there, the initializer's shape and dtype need {want}")
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            fh.seek(offset)
            return fh.read(length)
    except OSError as err:
        raise ModelError(f"{what} cannot be read: {err}") from None
    except ValueError as err:
        raise ModelError(f"{what}: bad offset or length ({err})") from None
    finally:
        if fd >= 0:
            os.close(fd)


def _open_beneath(root: str, rel: str) -> int:
    """A read-only descriptor for root/rel, opened one component at a time relative to the last with
    O_NOFOLLOW: a symlink put in place of any component after the path was checked makes the open fail
    instead of leading outside. O_NONBLOCK: a FIFO must not block the open (fstat then refuses it)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    if not nofollow or os.open not in os.supports_dir_fd:  # Windows: no dir_fd opens; the realpath check stands
        return os.open(os.path.join(root, rel), os.O_RDONLY | getattr(os, "O_BINARY", 0))
    parts = [p for p in rel.split(os.sep) if p not in ("", ".")]
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for k, part in enumerate(parts):
            last = k == len(parts) - 1
            nxt = os.open(part, os.O_RDONLY | nofollow | (os.O_NONBLOCK if last else os.O_DIRECTORY), dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _initializer_array(init, base_dir: str | None) -> np.ndarray:
    onnx = _onnx()
    if init.data_location != onnx.TensorProto.EXTERNAL:
        return onnx.numpy_helper.to_array(init)
    dtype = np.dtype(np_dtype(init.data_type))
    shape = tuple(int(d) for d in init.dims)
    raw = _external_bytes(init, base_dir, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    return np.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype).reshape(shape)


class _Importer:
    def __init__(self, proto, shapes: dict, constants: dict, base_dir: str | None = None,
                 limits: Limits | None = None):
        from lathe import ops

        self.base_dir, self.limits = base_dir, limits or Limits()

        self.ops = ops.OPS
        self.proto = proto
        self.shapes = dict(shapes or {})
        self.constants = {k: np.ascontiguousarray(v) for k, v in (constants or {}).items()}
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        self.values: dict[str, Value] = {}
        self.nodes: list[Node] = []

    def run(self) -> Graph:
        g, lim = self.proto.graph, self.limits
        if self.opset is not None and self.opset < 1:
            raise ModelError(f"the model imports ONNX opset {self.opset}; opset versions start at 1")
        if len(g.node) > lim.nodes:
            raise lim.exceeded(f"the graph has {len(g.node):,} nodes", "nodes")
        _check_names(g)
        claimed = 0
        for init in g.initializer:
            claimed += lim.check_shape(f"initializer {init.name!r}", tuple(init.dims)) * _itemsize(init.data_type)
            if claimed > lim.initializer_bytes:
                raise lim.exceeded(f"initializers up to {init.name!r} claim {claimed:,} bytes",
                                   "initializer_bytes")
        for init in g.initializer:
            try:
                np_dtype(init.data_type)
            except ModelError as err:
                raise ModelError(f"initializer {init.name!r}: {err}") from None
            try:
                arr = _initializer_array(init, self.base_dir)
            except ModelError:
                raise
            except Exception as err:
                raise ModelError(f"initializer {init.name!r} cannot be read: {err}") from None
            self.values[init.name] = Value(init.name, tuple(arr.shape), str(arr.dtype), np.ascontiguousarray(arr))
        inputs = []
        for vi in g.input:
            if vi.name in self.values:
                continue  # older exporters list initializers as inputs too
            if vi.name in self.constants:  # frozen by the caller: known at compile time
                arr = self.constants[vi.name]
                self.values[vi.name] = Value(vi.name, tuple(arr.shape), str(arr.dtype), arr)
                continue
            dtype = np_dtype(vi.type.tensor_type.elem_type)
            self.values[vi.name] = Value(vi.name, _dims(vi, self.shapes), dtype)
            lim.check_shape(f"input {vi.name!r}", self.values[vi.name].shape)
            inputs.append(vi.name)
        unknown = (set(self.shapes) - set(inputs)) | (set(self.constants) - {vi.name for vi in g.input})
        if unknown:
            raise ModelError(f"shapes or constants given for {sorted(unknown)}, which are not inputs of the model; "
                             f"its inputs are {[vi.name for vi in g.input]}")
        self._check_supported(g)
        nodes = [self._raw(k, n) for k, n in enumerate(g.node)]
        for raw in topo_sort(nodes, set(self.values)):
            self._convert(raw)
        outputs = [o.name for o in g.output]
        for o in outputs:
            if o not in self.values:
                raise ModelError(f"graph output {o!r} is not produced by any node")
        return Graph(inputs, outputs, self.nodes, self.values, self.opset)

    def _check_supported(self, g) -> None:
        missing = {}
        for n in g.node:
            if n.domain not in ("", "ai.onnx") or (n.op_type not in self.ops and n.op_type not in FOLDED_HERE):
                key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                missing.setdefault(key, []).append(n.name or f"#{list(g.node).index(n)}")
        if missing:
            listed = "; ".join(f"{op} (nodes: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                               for op, names in sorted(missing.items()))
            raise ModelError(f"the model uses {len(missing)} operator(s) lathe does not support: {listed}")

    @staticmethod
    def _raw(k: int, n) -> Node:
        name = n.name or f"{n.op_type}_{k}"
        return Node(n.op_type, name, [i for i in n.input], [o for o in n.output], {"_proto": n})

    def _check_schema(self, n, name: str) -> None:
        """Input and output counts, attribute names and types as ONNX's schema for the model's opset has them."""
        defs = _onnx().defs
        latest = defs.onnx_opset_version()
        try:
            schema = defs.get_schema(n.op_type, min(self.opset or latest, latest), "")
        except defs.SchemaError:
            raise ModelError(f"node {name} ({n.op_type}) does not exist in ONNX opset {self.opset}") from None
        what = f"node {name} ({n.op_type}, ONNX {n.op_type}-{schema.since_version})"
        for kind, got, lo, hi in (("inputs", n.input, schema.min_input, schema.max_input),
                                  ("outputs", n.output, schema.min_output, schema.max_output)):
            if not lo <= len(got) <= hi or not all(got[:lo]):
                need = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi < 1 << 20 else f"at least {lo}"
                raise ModelError(f"{what} takes {need} {kind} (the first {lo} named), got {list(got)}")
        seen = set()
        for a in n.attribute:
            spec = schema.attributes.get(a.name)
            if spec is None:
                raise ModelError(f"{what} has no attribute {a.name!r}; it has {sorted(schema.attributes) or 'none'}")
            if a.type != spec.type.value:
                got = a.AttributeType.Name(a.type) if a.type in a.AttributeType.values() else a.type
                raise ModelError(f"{what}: attribute {a.name} must be {spec.type.name}, got {got}")
            if a.name in seen:
                raise ModelError(f"{what}: attribute {a.name} is given twice")
            seen.add(a.name)
        missing = [k for k, spec in schema.attributes.items() if spec.required and k not in seen]
        if missing:
            raise ModelError(f"{what}: required attribute(s) {', '.join(missing)} missing")
        allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        bound: dict = {}
        for pos, inp in enumerate(n.input):
            if not inp or inp not in self.values:
                continue
            formal = schema.inputs[min(pos, len(schema.inputs) - 1)]
            dtype = self.values[inp].dtype
            if ONNX_TYPE.get(dtype) not in allowed.get(formal.type_str, {formal.type_str}):
                ok = sorted(t[7:-1] for t in allowed.get(formal.type_str, {formal.type_str}))
                raise ModelError(f"{what}: input {pos} ({inp!r}) is {dtype}; it must be one of {', '.join(ok)}")
            first = bound.setdefault(formal.type_str, (inp, dtype))
            if first[1] != dtype:
                raise ModelError(f"{what}: inputs {first[0]!r} ({first[1]}) and {inp!r} ({dtype}) must have "
                                 f"the same type ({formal.type_str})")

    def _convert(self, raw: Node) -> None:
        proto = raw.attrs.pop("_proto")
        self._check_schema(proto, raw.name)
        try:
            attrs = _attrs(proto)
        except LatheError:
            raise
        except Exception as err:  # protobuf/onnx helpers raise assorted types on malformed attributes
            raise ModelError(f"node {raw.name} ({raw.op}): cannot read its attributes: {err}") from None
        if raw.op in FOLDED_HERE:
            return self._fold_here(raw, attrs)
        opdef = self.ops[raw.op]
        tensor_inputs = []
        for pos, name in enumerate(raw.inputs):
            if not name:
                continue
            if pos in opdef.const_inputs:
                v = self.values[name]
                if not v.is_const:
                    raise ModelError(f"node {raw.name} ({raw.op}): input {pos} ({opdef.const_inputs[pos]}) must be "
                                     f"a constant known at compile time, but {name!r} is computed at run time")
                attrs[opdef.const_inputs[pos]] = v.data
            else:
                tensor_inputs.append(name)
        outs = list(raw.outputs)
        while outs and not outs[-1]:
            outs.pop()
        node = Node(raw.op, raw.name, tensor_inputs, outs, attrs)
        results = self._infer(node)
        for name, t in zip(outs, results):  # before folding could allocate it
            self.limits.check_shape(f"node {raw.name} ({raw.op}) output {name!r}", tuple(t.shape))
        if all(self.values[i].is_const for i in tensor_inputs) and self._foldable(results):
            arrays = evaluate(node, [self.values[i].data for i in tensor_inputs], self.ops, self.opset)
            for name, arr in zip(outs, arrays):
                if name:
                    self.values[name] = Value(name, tuple(arr.shape), str(arr.dtype), arr)
            return
        for name, t in zip(outs, results):
            if name:
                self.values[name] = Value(name, tuple(t.shape), t.dtype)
        node.outputs = outs
        self.nodes.append(node)

    def _infer(self, node: Node) -> list:
        ins = [self.values[i] for i in node.inputs]
        return build_op(node, [(v.shape, v.dtype) for v in ins], self.ops, self.opset)[1]

    @staticmethod
    def _foldable(results: list) -> bool:
        return sum(int(np.prod(t.shape, dtype=np.int64)) for t in results) <= MAX_FOLD_ELEMENTS

    def _fold_here(self, raw: Node, attrs: dict) -> None:
        if raw.op == "Constant":
            if len(attrs) != 1:
                raise ModelError(f"node {raw.name} (Constant) needs exactly one value attribute, got {sorted(attrs)}")
            key, v = next(iter(attrs.items()))
            dtype = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                     "value_ints": np.int64}.get(key)
            arr = np.asarray(v, dtype=dtype) if dtype is not None else np.asarray(v)
        else:
            if not raw.inputs or raw.inputs[0] not in self.values:
                raise ModelError(f"node {raw.name} ({raw.op}) has no input")
            shape = self.values[raw.inputs[0]].shape
            if raw.op == "Size":
                arr = np.asarray(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
            else:
                start, end = attrs.get("start", 0), attrs.get("end", len(shape))
                arr = np.asarray(shape[slice(start, end)], dtype=np.int64)
        name = raw.outputs[0]
        self.values[name] = Value(name, tuple(arr.shape), str(arr.dtype), np.ascontiguousarray(arr))


def build_op(node: Node, inputs: list, ops: dict, opset: int | None = None) -> tuple:
    """(placeholders, outputs): the node's tensor expression over placeholders of the given shapes."""
    from lathe import te
    from lathe.ops.registry import call

    shapes = ", ".join(f"{dt}{list(sh)}" for sh, dt in inputs)
    try:
        phs = [te.placeholder(shape, dtype, name=f"in{k}") for k, (shape, dtype) in enumerate(inputs)]
        outs = call(node.op, phs, node.attrs, len(node.outputs), opset)
    except LatheError as err:
        raise ModelError(f"node {node.name} ({node.op}) with inputs ({shapes}): {err}") from None
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as err:
        raise ModelError(f"node {node.name} ({node.op}) with inputs ({shapes}): {type(err).__name__}: {err}") from None
    if len(outs) < len(node.outputs):
        raise ModelError(f"node {node.name} ({node.op}) has {len(node.outputs)} outputs, lathe computes {len(outs)}")
    return phs, outs


def evaluate(node: Node, arrays: list, ops: dict, opset: int | None = None) -> list:
    """Run one node on constant inputs with lathe itself (llvm, default schedule)."""
    import lathe
    from lathe import te

    phs, outs = build_op(node, [(a.shape, str(a.dtype)) for a in arrays], ops, opset)
    outs = outs[:max(1, len(node.outputs))]
    s = te.create_schedule(outs)
    kernel = lathe.build(s, phs + outs, target="llvm", name=f"fold_{node.op}")
    results = [np.empty(t.shape, t.dtype) for t in outs]
    kernel(*[np.ascontiguousarray(a) for a in arrays], *results)
    return results


def load_onnx(model, shapes: dict | None = None, constants: dict | None = None,
              limits: Limits | None = None) -> Graph:
    """Read an ONNX model (path, bytes or ModelProto) into lathe's graph IR.

    `shapes` fixes input shapes; `constants` freezes graph inputs to given values (for inputs
    that are really parameters, such as a Reshape's target shape fed as a graph input).
    """
    base_dir = os.path.dirname(os.path.abspath(os.fspath(model))) if isinstance(model, (str, os.PathLike)) else None
    return _Importer(parse(model, limits), shapes or {}, constants or {}, base_dir, limits).run()
