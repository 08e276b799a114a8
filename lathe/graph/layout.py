"""Layout pass (CPU): run 2-D convolutions, the pools and elementwise ops between them on channel-blocked
NCHW[b]c tensors, with weights packed once at compile time.

Values keep their ONNX names in NCHW; a blocked copy of value `v` is named `v:c<b>`. The pass walks the
nodes in order and converts a node when its inputs can be blocked cheaply; a node that needs NCHW gets a
lathe.FromBlocked in front of it, once per value. So transforms appear only at the edges of blocked
regions and none between consecutive convolutions.
"""

from __future__ import annotations

import numpy as np

from lathe.graph.ir import Graph, Node, Value
from lathe.graph.passes import remove_dead
from lathe.ops.registry import OPS

DENSE_CONVS = ("lathe.ConvNCHWc", "lathe.ConvWinogradNCHWc")
POOLS = {"MaxPool": "lathe.MaxPoolNCHWc", "AveragePool": "lathe.AveragePoolNCHWc"}


def channel_block(c: int, lanes: int) -> int | None:
    """The block for c channels: a full vector when it divides c, else half of one; None: leave in NCHW."""
    return next((b for b in (lanes, lanes // 2) if b >= 4 and c % b == 0), None)


def _input_block(c: int, lanes: int) -> int:
    """Input channels are read one at a time, so any divisor of c will do (3 channels: block 3, NHWC)."""
    return channel_block(c, lanes) or (c if c <= lanes else 1)


class _Rewriter:
    def __init__(self, g: Graph):
        self.g, self.nodes = g, []
        self.block: dict = {}  # value -> block of its blocked copy
        self.plain = set(g.inputs) | {k for k, v in g.values.items() if v.is_const}

    def blocked_name(self, v: str, b: int) -> str:
        return f"{v}:c{b}"

    def add_value(self, name: str, shape: tuple, dtype: str, data=None) -> str:
        self.g.values[name] = Value(name, tuple(shape), dtype, data)
        return name

    def need_plain(self, v: str) -> str:
        if v not in self.plain:
            b = self.block[v]
            self.nodes.append(Node("lathe.FromBlocked", f"{v}/from_c{b}", [self.blocked_name(v, b)], [v]))
            self.plain.add(v)
        return v

    def need_blocked(self, v: str, b: int) -> str:
        """v blocked by b; channels round up to whole blocks of zeros (a 3-channel image as one block of 4)."""
        name = self.blocked_name(v, b)
        if self.block.get(v) != b and name not in self.g.values:
            src = self.g.values[self.need_plain(v)]
            n, c, *sp = src.shape
            self.add_value(name, (n, -(-c // b), *sp, b), src.dtype)
            self.nodes.append(Node("lathe.ToBlocked", f"{v}/to_c{b}", [v], [name],
                                   {"block": b, **({"pad": 1} if c % b else {})}))
        return name

    def blocked_output(self, n: Node, b: int) -> str:
        out = self.g.values[n.outputs[0]]
        nb, c, *sp = out.shape
        self.block[out.name] = b
        return self.add_value(self.blocked_name(out.name, b), (nb, c // b, *sp, b), out.dtype)


def _pack_dense(w: np.ndarray, ib: int, ob: int) -> np.ndarray:
    if w.shape[1] % ib:  # input channels padded to whole blocks (need_blocked): zero weights for them
        w = np.concatenate([w, np.zeros((w.shape[0], -w.shape[1] % ib, *w.shape[2:]), w.dtype)], axis=1)
    m, c, kh, kw = w.shape  # (M/ob, ob, C/ib, ib, KH, KW) -> (M/ob, C/ib, KH, KW, ib, ob)
    return np.ascontiguousarray(w.reshape(m // ob, ob, c // ib, ib, kh, kw).transpose(0, 2, 4, 5, 3, 1))


def _pack_depthwise(w: np.ndarray, b: int) -> np.ndarray:
    c, _, kh, kw = w.shape  # (C/b, b, KH, KW) -> (C/b, KH, KW, b)
    return np.ascontiguousarray(w.reshape(c // b, b, kh, kw).transpose(0, 2, 3, 1))


def winograd_tile(n: Node, w: np.ndarray, out_hw: tuple) -> int | None:
    """The Winograd output tile for a 3x3 stride-1 'same' convolution, or None for the direct one.

    F(4x4, 3x3) when the output splits into 4x4 tiles, F(2x2, 3x3) into 2x2 ones. Left direct: small
    outputs (7x7: the weights, 4x larger transformed, are what such a layer spends its time reading) and
    few channels (the transforms would outweigh the saved multiplies)."""
    a = n.attrs
    if (w.shape[2:] != (3, 3) or a.get("auto_pad", "NOTSET") != "NOTSET" or list(a.get("pads") or [0]) != [1] * 4
            or any(s != 1 for s in a.get("strides") or [1]) or any(d != 1 for d in a.get("dilations") or [1])
            or min(w.shape[:2]) < 32):
        return None
    oh, ow = out_hw
    return next((t for t in (4, 2) if oh % t == 0 and ow % t == 0 and min(oh, ow) >= 4 * t), None)


def _pack_winograd(w: np.ndarray, tile: int, ib: int, ob: int) -> np.ndarray:
    """U = G g G^T per (output, input) channel pair, packed (A, A, M/ob, C/ib, ib, ob); computed in float64."""
    from lathe.ops.layout import WINOGRAD

    g = np.array(WINOGRAD[tile][1], dtype=np.float64)
    m, c = w.shape[:2]
    u = np.einsum("ak,mckl,bl->abmc", g, w.astype(np.float64), g)
    a = tile + 2
    u = u.reshape(a, a, m // ob, ob, c // ib, ib).transpose(0, 1, 2, 4, 5, 3)
    return np.ascontiguousarray(u, dtype=np.float32)


def _conv_kind(g: Graph, n: Node) -> str | None:
    if n.op != "Conv" or len(n.outputs) != 1 or len(n.inputs) < 2:
        return None
    x, w = g.values[n.inputs[0]], g.values[n.inputs[1]]
    if len(x.shape) != 4 or not w.is_const or x.dtype != "float32" or w.dtype != "float32":
        return None
    if len(n.inputs) > 2 and not g.values[n.inputs[2]].is_const:
        return None
    group = int(n.attrs.get("group", 1))
    if group == 1:
        return "dense"
    if group == x.shape[1] == w.shape[0] and w.shape[1] == 1:
        return "depthwise"
    return None


def block_layout(g: Graph, lanes: int, winograd: bool = True, pad_input: bool = False) -> Graph:
    """Rewrite g so that 2-D float convolutions and what runs between them use blocked layouts; 3x3 ones
    by Winograd where it pays (`winograd=False`, target option `-winograd=0`: never). `pad_input`: a
    convolution over fewer channels than a block (an RGB image) reads them as one zero-padded block."""
    r = _Rewriter(g)
    for n in g.nodes:
        kind = _conv_kind(g, n)
        x = g.values[n.inputs[0]] if n.inputs else None
        if kind is not None:
            w = g.values[n.inputs[1]].data
            m, c = w.shape[0], x.shape[1]
            ob = (r.block.get(n.inputs[0]) if kind == "depthwise" else None) or channel_block(m, lanes)
            if ob is not None and m % ob == 0:
                tile = None
                if kind == "dense":
                    ib = r.block.get(n.inputs[0]) or (lanes if pad_input and c < lanes else _input_block(c, lanes))
                    ib = ib if c % ib == 0 or (pad_input and c < ib) else _input_block(c, lanes)
                    tile = winograd and winograd_tile(n, w, g.values[n.outputs[0]].shape[2:])
                    packed = _pack_winograd(w, tile, ib, ob) if tile else _pack_dense(w, ib, ob)
                else:
                    ib, packed = ob, _pack_depthwise(w, ob)
                ins = [r.need_blocked(n.inputs[0], ib),
                       r.add_value(f"{n.inputs[1]}:packed{ib}x{ob}", packed.shape, "float32", packed)]
                if len(n.inputs) > 2:
                    bias = g.values[n.inputs[2]].data.reshape(m // ob, ob)
                    ins.append(r.add_value(f"{n.inputs[2]}:c{ob}", bias.shape, "float32", bias))
                attrs = {k: v for k, v in n.attrs.items() if k in ("auto_pad", "dilations", "pads", "strides")}
                attrs.update(kernel=list(w.shape[2:]), depthwise=int(kind == "depthwise"))
                if tile:
                    attrs = {"pads": attrs["pads"], "tile": tile}
                op = "lathe.ConvWinogradNCHWc" if tile else "lathe.ConvNCHWc"
                r.nodes.append(Node(op, n.name, ins, [r.blocked_output(n, ob)], attrs))
                continue
        b = next((r.block[i] for i in n.inputs if i in r.block), None)
        if b and n.op in POOLS and n.inputs[0] in r.block and len(n.outputs) == 1 and len(x.shape) == 4:
            r.nodes.append(Node(POOLS[n.op], n.name, [r.need_blocked(n.inputs[0], b)], [r.blocked_output(n, b)],
                                dict(n.attrs)))
            continue
        if b and _blockable_elementwise(g, n, r.block) and g.values[n.outputs[0]].shape[1] % b == 0:
            ins = [r.need_blocked(i, b) for i in n.inputs]
            r.nodes.append(Node(n.op, n.name, ins, [r.blocked_output(n, b)], dict(n.attrs)))
            continue
        for i in n.inputs:
            r.need_plain(i)
        r.nodes.append(n)
        r.plain.update(n.outputs)
    for o in g.outputs:
        r.need_plain(o)
    return remove_dead(Graph(g.inputs, g.outputs, r.nodes, g.values, g.opset))


def add_halos(g: Graph, groups: list) -> None:
    """Store a blocked value inside a zero border when every dense blocked convolution reading it pads
    by that same amount on all sides: its producer writes the interior, the border stays zero, and the
    convolutions read it in place of a padded copy (a copy costs up to 10% of a 3x3 convolution).
    Every other kernel reads the value through the border's strides."""
    need: dict = {}
    for n in g.nodes:
        if n.op in DENSE_CONVS and not n.attrs.get("depthwise"):
            p = n.attrs.get("pads")
            ok = p is not None and len(set(p)) == 1 and p[0] > 0 and n.attrs.get("auto_pad", "NOTSET") == "NOTSET"
            need.setdefault(n.inputs[0], set()).add(p[0] if ok else None)
    produced = {o for gr in groups for o in gr.outputs}  # stored values (fused intermediates are not)
    for v, pads in need.items():
        if len(pads) == 1 and None not in pads and v in produced and v not in g.outputs:
            g.values[v].halo = pads.pop()
    for n in g.nodes:
        if n.op in DENSE_CONVS and g.values[n.inputs[0]].halo:
            n.attrs["input_halo"] = g.values[n.inputs[0]].halo


def _blockable_elementwise(g: Graph, n: Node, block: dict) -> bool:
    """Elementwise ops are layout-free when every operand has the output's shape; an NCHW operand
    (a residual from outside the blocked region) is blocked to match."""
    if OPS[n.op].pattern not in ("elemwise", "broadcast") or len(n.outputs) != 1:
        return False
    shape = g.values[n.outputs[0]].shape
    return len(shape) == 4 and all(g.values[i].shape == shape for i in n.inputs)


def split_reductions(g: Graph, invocations: int = 32768, min_steps: int = 256) -> Graph:
    """Cut the channel reduction of dense blocked convolutions whose outputs are too few to fill a GPU into
    S slices: one kernel computes the S partial sums (S times the work-items, each 1/S of the loop) and a
    lathe.SumSplits adds them up, with the bias; the epilogue fuses onto the sum. S is the smallest power
    of two giving at least `invocations` output texels, with at least 8 channel blocks per slice. For GL
    compute shaders: ResNet-18's 7x7 layers are 6272 texels of 4608 multiply-adds each, two warps per SM
    on an H100; splitting them 8 ways took them from 0.36 to 0.08 ms. Only loops of at least `min_steps`
    (channel blocks x taps) are cut: the extra kernel costs about what a short loop saves (splitting every
    small 1x1 convolution of EfficientNet-Lite0 made it 1.2x slower there)."""
    nodes = []
    for n in g.nodes:
        x = g.values[n.inputs[0]] if n.inputs else None
        out = g.values[n.outputs[0]] if n.outputs else None
        if n.op != "lathe.ConvNCHWc" or n.attrs.get("depthwise") or n.attrs.get("splits", 1) > 1:
            nodes.append(n)
            continue
        texels, cb, splits = int(np.prod(out.shape[:-1])), x.shape[1], 1
        steps = cb * int(np.prod(n.attrs["kernel"]))
        while steps >= min_steps and texels * splits < invocations and cb % (2 * splits) == 0 \
                and cb // (2 * splits) >= 8:
            splits *= 2
        if splits == 1:
            nodes.append(n)
            continue
        part = f"{out.name}:splits{splits}"
        g.values[part] = Value(part, (splits, *out.shape), out.dtype)
        nodes.append(Node(n.op, n.name, n.inputs[:2], [part], {**n.attrs, "splits": splits}))
        nodes.append(Node("lathe.SumSplits", f"{n.name}/sum", [part, *n.inputs[2:]], list(n.outputs)))
    return Graph(g.inputs, g.outputs, nodes, g.values, g.opset)
