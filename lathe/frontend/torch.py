"""PyTorch front end: an nn.Module (through torch.export, core ATen ops) into lathe's graph IR, and the
`torch.compile(model, backend="lathe")` back end.

    model = lathe.compile(module, "llvm", example_inputs=(x,))     # static shapes, weights as constants
    fast = torch.compile(module, backend="lathe")                   # or options={"target": "opencl"}

Each core ATen op maps to the ONNX-named operator lathe already computes, with ONNX's attribute
conventions, so everything after import (folding, fusion, layouts, schedules) is shared with the
ONNX path. torch is imported only here: `import lathe` works without it.
"""

from __future__ import annotations

import operator
import warnings

import numpy as np

from lathe.errors import ModelError
from lathe.graph.ir import Graph, Node, Value

OPSET = 17  # the ONNX opset whose operator semantics the mapped nodes follow


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ModelError(f"compiling a PyTorch module needs torch (pip install torch): {e}") from None
    return torch


def _pair(v, n: int = 2) -> list:
    return list(v) * n if len(v) == 1 else list(v)


# ATen op -> function (importer, node args) -> (ONNX op, tensor inputs, attrs); None: an alias of arg 0
def _conv(imp, x, w, b, stride, padding, dilation, transposed, output_padding, groups):
    k = len(imp.shape(w)) - 2
    attrs = {"strides": _pair(stride, k), "pads": _pair(padding, k) * 2, "dilations": _pair(dilation, k),
             "group": int(groups)}
    if transposed:
        attrs["output_padding"] = _pair(output_padding, k)
    return ("ConvTranspose" if transposed else "Conv"), [x, w] + ([b] if b is not None else []), attrs


def _batch_norm(imp, x, w, b, mean, var, momentum, eps):
    c = imp.shape(x)[1]
    w = w if w is not None else imp.const(np.ones(c, np.float32))
    b = b if b is not None else imp.const(np.zeros(c, np.float32))
    return "BatchNormalization", [x, w, b, mean, var], {"epsilon": float(eps)}


def _pool(op):
    def convert(imp, x, kernel, stride=(), padding=(0,), dilation=(1,), ceil_mode=False, *rest):
        k = len(kernel)
        attrs = {"kernel_shape": list(kernel), "strides": _pair(stride or kernel, k), "pads": _pair(padding, k) * 2,
                 "ceil_mode": int(bool(ceil_mode))}
        if op == "MaxPool":
            attrs["dilations"] = _pair(dilation, k)
        elif rest and rest[0] is not None and not rest[0]:  # avg_pool2d(..., count_include_pad=False)
            attrs["count_include_pad"] = 0
        else:
            attrs["count_include_pad"] = 1
        return op, [x], attrs
    return convert


def _binary(op):
    def convert(imp, a, b, alpha=1):
        a, b = imp.operand(a, b), imp.operand(b, a)
        if alpha != 1:
            b = imp.emit("Mul", [b, imp.const(np.asarray(alpha, imp.dtype(b)))], {})
        return op, [a, b], {}
    return convert


def _clamp(imp, x, lo=None, hi=None):
    dt = imp.dtype(x)
    attrs = {k: np.asarray(v, dt) for k, v in (("min", lo), ("max", hi)) if v is not None}
    return "Clip", [x], attrs


def _reduce(op):
    def convert(imp, x, dims=None, keepdim=False, *rest):
        attrs = {"keepdims": int(bool(keepdim))}
        if dims:
            attrs["axes"] = np.asarray(dims, np.int64)
        return op, [x], attrs
    return convert


def _pad(imp, x, pad, value=0.0):
    """torch lists (before, after) pairs from the last dimension back; ONNX all befores, then all afters."""
    rank, m = len(imp.shape(x)), len(pad) // 2
    begins = [0] * (rank - m) + [pad[2 * (m - 1 - i)] for i in range(m)]
    ends = [0] * (rank - m) + [pad[2 * (m - 1 - i) + 1] for i in range(m)]
    return "Pad", [x], {"pads": np.asarray(begins + ends, np.int64), "constant_value": np.asarray(value, imp.dtype(x))}


def _adaptive_avg_pool(imp, x, size):
    if any(s != 1 for s in size):
        raise ModelError(f"adaptive_avg_pool to {list(size)}: lathe supports output size 1 (global pooling) only")
    return "GlobalAveragePool", [x], {}


ATEN = {
    "convolution.default": _conv,
    "_native_batch_norm_legit_no_training.default": _batch_norm,
    "relu.default": lambda imp, x: ("Relu", [x], {}),
    "sigmoid.default": lambda imp, x: ("Sigmoid", [x], {}),
    "tanh.default": lambda imp, x: ("Tanh", [x], {}),
    "exp.default": lambda imp, x: ("Exp", [x], {}),
    "sqrt.default": lambda imp, x: ("Sqrt", [x], {}),
    "neg.default": lambda imp, x: ("Neg", [x], {}),
    "hardtanh.default": lambda imp, x, lo=-1.0, hi=1.0: _clamp(imp, x, lo, hi),
    "clamp.default": _clamp,
    "add.Tensor": _binary("Add"), "sub.Tensor": _binary("Sub"),
    "mul.Tensor": _binary("Mul"), "div.Tensor": _binary("Div"),
    "max_pool2d_with_indices.default": _pool("MaxPool"),
    "avg_pool2d.default": _pool("AveragePool"),
    "_adaptive_avg_pool2d.default": _adaptive_avg_pool,
    "constant_pad_nd.default": _pad,
    "mean.dim": _reduce("ReduceMean"), "sum.dim_IntList": _reduce("ReduceSum"),
    "amax.default": _reduce("ReduceMax"),
    "view.default": lambda imp, x, shape: ("Reshape", [x], {"shape": np.asarray(shape, np.int64)}),
    "_unsafe_view.default": lambda imp, x, shape: ("Reshape", [x], {"shape": np.asarray(shape, np.int64)}),
    "reshape.default": lambda imp, x, shape: ("Reshape", [x], {"shape": np.asarray(shape, np.int64)}),
    "permute.default": lambda imp, x, perm: ("Transpose", [x], {"perm": list(perm)}),
    "t.default": lambda imp, x: ("Transpose", [x], {"perm": [1, 0]}),
    "addmm.default": lambda imp, bias, a, b, beta=1, alpha=1: ("Gemm", [a, b, bias],
                                                                {"alpha": float(alpha), "beta": float(beta)}),
    "mm.default": lambda imp, a, b: ("MatMul", [a, b], {}),
    "bmm.default": lambda imp, a, b: ("MatMul", [a, b], {}),
    "cat.default": lambda imp, xs, dim=0: ("Concat", list(xs), {"axis": int(dim)}),
    "_softmax.default": lambda imp, x, dim, half: ("Softmax", [x], {"axis": int(dim)}),
    "clone.default": None, "alias.default": None, "dropout.default": None, "detach.default": None,
}


class _Importer:
    """Walks an ExportedProgram's graph, emitting lathe graph nodes (shapes inferred, constants folded)."""

    def __init__(self, program, frozen: dict | None = None):
        from lathe import ops

        self.ops, self.ep = ops.OPS, program
        self.values: dict[str, Value] = {}
        self.nodes: list[Node] = []
        self.env: dict = {}  # fx node name -> lathe value name (or a tuple of them)
        self.frozen = frozen or {}
        self.count = 0

    # ---- helpers the converters use
    def shape(self, name: str) -> tuple:
        return self.values[name].shape

    def dtype(self, name: str) -> str:
        return self.values[name].dtype

    def const(self, arr: np.ndarray, hint: str = "const") -> str:
        name = self.fresh(hint)
        arr = np.ascontiguousarray(arr)
        self.values[name] = Value(name, tuple(arr.shape), str(arr.dtype), arr)
        return name

    def operand(self, x, other) -> str:
        """A value name for a tensor operand, or a constant of the other operand's type for a Python scalar."""
        if isinstance(x, str):
            return x
        return self.const(np.asarray(x, self.dtype(other) if isinstance(other, str) else np.float32), "scalar")

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}" if hint in self.values or hint == "const" or hint == "scalar" else hint

    def emit(self, op: str, inputs: list, attrs: dict, name: str | None = None) -> str:
        from lathe.frontend.onnx import build_op, evaluate

        out = self.fresh(name or op.lower())
        node = Node(op, out, list(inputs), [out], attrs)
        shapes = [(self.values[i].shape, self.values[i].dtype) for i in inputs]
        (result,) = build_op(node, shapes, self.ops, OPSET)[1][:1]
        if all(self.values[i].is_const for i in inputs):  # weights-only arithmetic (a transposed Linear weight)
            (arr,) = evaluate(node, [self.values[i].data for i in inputs], self.ops, OPSET)[:1]
            self.values[out] = Value(out, tuple(arr.shape), str(arr.dtype), arr)
        else:
            self.values[out] = Value(out, tuple(result.shape), result.dtype)
            self.nodes.append(node)
        return out

    # ---- the walk
    def run(self) -> Graph:
        torch = _torch()
        ep, sig = self.ep, self.ep.graph_signature
        consts = {**ep.state_dict, **getattr(ep, "constants", {})}
        lifted = {**sig.inputs_to_parameters, **sig.inputs_to_buffers,
                  **getattr(sig, "inputs_to_lifted_tensor_constants", {})}
        fx_nodes = list(ep.graph_module.graph.nodes)
        missing: dict = {}
        for n in fx_nodes:
            if n.op == "call_function" and n.target is not operator.getitem and _key(n.target) not in ATEN:
                missing.setdefault(_key(n.target), []).append(n.name)
        if missing:
            listed = "; ".join(f"aten.{op} (nodes: {', '.join(names[:3])})" for op, names in sorted(missing.items()))
            raise ModelError(f"the module uses {len(missing)} ATen operator(s) lathe does not support: {listed}")
        inputs = []
        for n in fx_nodes:
            if n.op == "placeholder":
                val = n.meta.get("val")
                if n.name in lifted:
                    self.env[n.name] = self.const(_numpy(consts[lifted[n.name]]), n.name)
                elif n.name in self.frozen:
                    self.env[n.name] = self.const(_numpy(self.frozen[n.name]), n.name)
                elif isinstance(val, torch.Tensor):
                    dims = list(val.shape)
                    if not all(isinstance(d, int) for d in dims):
                        raise ModelError(f"input {n.name!r} has dynamic shape {dims}: lathe compiles static shapes; "
                                         "export without dynamic_shapes, or call torch.compile(..., dynamic=False)")
                    self.values[n.name] = Value(n.name, tuple(dims), _dtype(val.dtype))
                    self.env[n.name] = n.name
                    inputs.append(n.name)
                else:
                    raise ModelError(f"input {n.name!r} is {type(val).__name__}; lathe takes tensor inputs only")
            elif n.op == "call_function":
                self.env[n.name] = self._call(n)
            elif n.op == "output":
                outs = [self.env[a.name] for a in _flat(n.args[0])]
        for k, o in enumerate(outs):
            if self.values[o].is_const or o in inputs:  # an output must be a node's: copy it through Identity
                outs[k] = self.emit("Identity", [o], {}, f"output_{k}")
        return Graph(inputs, outs, self.nodes, self.values, OPSET)

    def _call(self, n):
        args = [self._arg(a) for a in n.args]
        kwargs = {k: self._arg(v) for k, v in n.kwargs.items()}
        if n.target is operator.getitem:
            return args[0][args[1]]
        convert = ATEN[_key(n.target)]
        if convert is None:
            return args[0]
        try:
            op, ins, attrs = convert(self, *args, **kwargs)
        except ModelError as e:
            raise ModelError(f"node {n.name} (aten.{_key(n.target)}): {e}") from None
        out = self.emit(op, ins, attrs, n.name)
        if _key(n.target) in ("max_pool2d_with_indices.default", "_native_batch_norm_legit_no_training.default"):
            return (out, None, None)  # only the first result is ever read in inference
        return out

    def _arg(self, a):
        if hasattr(a, "op") and hasattr(a, "name"):  # an fx Node
            return self.env[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(self._arg(x) for x in a)
        return a


def _key(target) -> str:
    """"convolution.default" for torch.ops.aten.convolution.default; other callables by their name."""
    if getattr(target, "namespace", None) == "aten":
        return target.__name__
    return getattr(target, "__name__", str(target))


def _flat(x) -> list:
    return [y for a in x for y in _flat(a)] if isinstance(x, (list, tuple)) else [x]


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy().copy()


def _dtype(dt) -> str:
    return str(dt).replace("torch.", "")


def export(module, example_inputs: tuple):
    """torch.export a module for inference and decompose it to core ATen ops."""
    torch = _torch()
    if isinstance(module, torch.export.ExportedProgram):
        ep = module
    else:
        if example_inputs is None:
            raise ModelError("compiling a PyTorch module needs example_inputs=(tensor, ...) of the shapes it will see")
        module = module.eval() if isinstance(module, torch.nn.Module) else module
        try:
            ep = torch.export.export(module, tuple(example_inputs))
        except Exception as e:  # torch raises many types for code it cannot trace
            raise ModelError(f"torch.export could not trace the module: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from None
    return ep.run_decompositions()


def load_torch(module, example_inputs: tuple | None = None, frozen: dict | None = None) -> Graph:
    """An nn.Module (or ExportedProgram) as lathe's graph IR, with its parameters and buffers as constants."""
    return _Importer(export(module, example_inputs), frozen).run()


# ---------------------------------------------------------------------------- torch.compile back end

def lathe_backend(gm, example_inputs, options: dict | None = None):
    """The `torch.compile` back end: each FX graph dynamo hands over is compiled by lathe for
    options["target"] (`torch.compile(m, backend="lathe", options={"target": "opencl"})`, default "llvm");
    a graph lathe cannot compile runs eagerly, with a warning naming the reason. Parameters and buffers
    are frozen into the compiled graph: this is for inference."""
    import lathe

    torch = _torch()
    target = (options or {}).get("target", "llvm")
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    params = [_is_state(n, x, torch) for n, x in zip(placeholders, example_inputs)]
    try:
        ep = torch.export.export(gm, tuple(example_inputs))
        user = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        frozen = {name: x for name, x, p in zip(user, example_inputs, params) if p}
        module = lathe.compile(_Importer(ep.run_decompositions(), frozen).run(), target)
    except Exception as e:  # noqa: BLE001 - any failure: fall back to eager for this graph
        warnings.warn(f"lathe could not compile a graph ({type(e).__name__}: {str(e).splitlines()[0][:300]}); "
                      "it runs eagerly", stacklevel=2)
        return gm.forward
    names = module.input_names
    keep = [k for k, (x, p) in enumerate(zip(example_inputs, params)) if not p and isinstance(x, torch.Tensor)]

    def run(*args):
        outs = module.run({name: _numpy_view(args[k]) for name, k in zip(names, keep)})
        return tuple(torch.from_numpy(o) for o in outs)

    run.lathe_module = module
    return run


def _is_state(node, x, torch) -> bool:
    """Whether a graph input is the module's own state (a parameter or a buffer such as BatchNorm's running
    statistics), which dynamo passes as an input: only the compiled function's own arguments stay inputs.
    dynamo names such inputs after where they live (`l_self_modules_bn_buffers_running_mean_`)."""
    source = getattr(node.meta.get("grapharg"), "source", None)
    where = source.name() if callable(getattr(source, "name", None)) else node.name
    return isinstance(x, torch.nn.Parameter) or "_parameters" in where or "_buffers" in where


def _numpy_view(t) -> np.ndarray:
    t = t.detach()
    return t.numpy() if t.device.type == "cpu" and t.is_contiguous() else t.cpu().contiguous().numpy()


def register() -> None:
    """Make `torch.compile(model, backend="lathe")` find this back end (also done by the entry point)."""
    from torch._dynamo import list_backends, register_backend

    if "lathe" not in list_backends(exclude_tags=()):
        register_backend(lathe_backend, name="lathe")


try:  # importing this module registers the back end too, for an uninstalled checkout (no entry point)
    register()
except ImportError:
    pass
