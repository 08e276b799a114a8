"""Code hidden in weights never runs: pickle payloads in .pth files, and a grep for unsafe loaders.

Each payload is first shown to work (an unrestricted `pickle.loads` writes the canary), so the
refusal that follows is a real one.
"""

from __future__ import annotations

import builtins
import os
import pathlib
import pickle
import posix
import re
import shutil
import subprocess
import zipfile
from collections import OrderedDict

import pytest

import lathe
from lathe.zoo.pth import load_state_dict


class _Reduce:
    """Pickles as `fn(*args)`: what an attacker's object does through __reduce__."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(canary: str) -> dict:
    """Ten ways a pickle can write `canary` when loaded without restrictions."""
    write = f"open({canary!r}, 'w').close()"
    return {
        "os.system": _Reduce(os.system, f"touch {canary}"),
        "posix.system": _Reduce(posix.system, f"touch {canary}"),
        "subprocess.call": _Reduce(subprocess.call, ["touch", canary]),
        "builtins.exec": _Reduce(builtins.exec, write),
        "builtins.eval": _Reduce(builtins.eval, f"open({canary!r}, 'w')"),
        "builtins.open": _Reduce(builtins.open, canary, "w"),
        "pathlib.Path.touch": _Reduce(pathlib.Path.touch, pathlib.Path(canary)),
        "shutil.copyfile": _Reduce(shutil.copyfile, __file__, canary),
        # hidden one level down, inside what looks like a state_dict
        "inside-state-dict": OrderedDict(weight=_Reduce(os.system, f"touch {canary}")),
        "inside-a-list": {"layers": [1.0, _Reduce(builtins.exec, write)]},
    }


def _write(path: pathlib.Path, pkl: bytes, layout: str) -> None:
    if layout == "zip":  # the format torch.save writes since 1.6
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", pkl)
            zf.writestr("archive/byteorder", "little")
    else:  # legacy: bare pickles back to back, the payload in the first (the magic number's place)
        path.write_bytes(pkl)


NAMES = list(_payloads("/nonexistent"))


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("name", NAMES)
def test_pickle_payload_never_runs(tmp_path, name: str, layout: str) -> None:
    control = tmp_path / "control-canary"
    pickle.loads(pickle.dumps(_payloads(str(control))[name], protocol=4))
    assert control.exists(), f"{name}: the payload does not work unrestricted, so this test would prove nothing"

    canary = tmp_path / "canary"
    path = tmp_path / f"{name}.pth"
    _write(path, pickle.dumps(_payloads(str(canary))[name], protocol=4), layout)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global|unexpected") as err:
        load_state_dict(path)
    assert isinstance(err.value, lathe.ModelError), "weight-file errors belong to lathe's error family"
    assert not canary.exists(), f"{name} ({layout}): the payload ran"


def test_pickle_payload_count() -> None:
    print(f"\npickle payloads refused: {len(NAMES)} payloads x 2 layouts = {2 * len(NAMES)} weight files")
    assert len(NAMES) == 10


UNSAFE = [
    (r"allow_pickle\s*=\s*True", "np.load with allow_pickle=True"),
    (r"torch\.load\(", "torch.load (runs pickled code unless weights_only)"),
    (r"pickle\.loads?\(", "an unrestricted pickle load"),
    (r"\bmarshal\b", "marshal"),
    (r"(?<![\w.])(eval|exec)\(", "eval/exec"),
    (r"yaml\.load\(", "yaml.load"),
]


def test_no_unsafe_loader_in_the_source() -> None:
    root = pathlib.Path(__file__).resolve().parent.parent / "lathe"
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        for pattern, what in UNSAFE:
            for m in re.finditer(pattern, text):
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{path.relative_to(root.parent)}:{line}: {what}")
    assert not found, "unsafe deserialisation in lathe:\n" + "\n".join(found)
    # the one pickle reader lathe has overrides find_class with an allow-list
    pth = (root / "zoo" / "pth.py").read_text()
    assert "class _StateDictUnpickler(pickle.Unpickler)" in pth and "def find_class" in pth


def test_restricted_reader_accepts_plain_bytes_only(tmp_path) -> None:
    """A state_dict of plain Python numbers (no tensors) is refused with a message, not loaded."""
    path = tmp_path / "numbers.pth"
    _write(path, pickle.dumps({"w": 1.0}, protocol=4), "zip")
    with pytest.raises(pickle.UnpicklingError, match="not a tensor"):
        load_state_dict(path)


# ---------------------------------------------------------------------------- tampered artifacts

def _saved_model(path: pathlib.Path):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    import lathe

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])], [numpy_helper.from_array(w, "w")])
    mod = lathe.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "llvm")
    mod.save(str(path))
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    return x, mod(x)


def test_tampered_artifacts_are_refused(tmp_path) -> None:
    import numpy as np

    import lathe

    good = tmp_path / "good"
    x, want = _saved_model(good)
    np.testing.assert_array_equal(lathe.load(str(good))(x), want)  # the untouched artifact loads and runs
    files = ["kernels.so", "params.bin", "graph.json", "manifest.json"]
    rng = np.random.default_rng(1)
    refused = 0
    for k in range(100):
        name = files[k % len(files)]
        bad = tmp_path / f"bad{k}"
        shutil.copytree(good, bad)
        data = bytearray((bad / name).read_bytes())
        pos = int(rng.integers(len(data)))
        data[pos] ^= 1 << int(rng.integers(8))  # one flipped bit
        (bad / name).write_bytes(bytes(data))
        with pytest.raises(lathe.LatheError, match=name if name != "manifest.json" else "manifest|SHA-256"):
            lathe.load(str(bad))
        refused += 1
        shutil.rmtree(bad)
    print(f"\ntampered artifacts refused: {refused} of 100")
    assert refused == 100


# ---------------------------------------------------------------------------- external data

_OPENED: list = []
_AUDITING: list = []
_HOOKED: list = []


_WRITTEN: list = []  # (path, mode, flags) of every open for writing while auditing
_SPAWNED: list = []  # argv of every subprocess while auditing
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event: str, args: tuple) -> None:
    if not _AUDITING:
        return
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))
        mode, flags = args[1], args[2]
        if (isinstance(mode, str) and set(mode) & set("wax+")) or (isinstance(flags, int) and flags & _WRITE_FLAGS):
            _WRITTEN.append((os.fsdecode(args[0]), mode, flags))
    elif event == "subprocess.Popen":
        _SPAWNED.append([os.fsdecode(a) if isinstance(a, (str, bytes, os.PathLike)) else str(a) for a in args[1]])


HOSTILE = ["/etc/passwd", "../secret.bin", "../../etc/passwd", "sub/../../secret.bin", "C:\\Windows\\win.ini",
           "c:secret.bin", "\\\\server\\share\\w.bin", "weights.bin\0.txt", "link_out.bin", "hard.bin",
           "dirlink/secret.bin", "..\\secret.bin", "", "/proc/self/environ", "sub/../../../secret.bin",
           "./../secret.bin", "file:///etc/passwd", "sub", "/dev/zero", "missing.bin"]


def _external_model(location: str, nbytes: int = 16):
    import onnx
    from onnx import helper

    w = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[nbytes // 4])
    w.data_location = onnx.TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [nbytes // 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [nbytes // 4])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_hostile_external_data_is_refused(tmp_path) -> None:
    import sys

    import numpy as np

    import lathe
    from lathe.frontend.onnx import load_onnx

    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (folder / "link_out.bin").symlink_to(secret)
    os.link(secret, folder / "hard.bin")
    (folder / "dirlink").symlink_to(tmp_path)
    good = np.arange(4, dtype=np.float32) + 10
    (folder / "weights.bin").write_bytes(good.tobytes())

    ok = folder / "ok.onnx"
    ok.write_bytes(_external_model("weights.bin").SerializeToString())
    x = np.ones(4, np.float32)
    np.testing.assert_array_equal(lathe.compile(str(ok), "llvm")(x), x + good)  # the legitimate case works

    if not _HOOKED:  # audit hooks cannot be removed: add ours once per process
        sys.addaudithook(_audit)
        _HOOKED.append(True)
    refused = 0
    _OPENED.clear()
    _AUDITING.append(True)
    try:
        for k, loc in enumerate(HOSTILE):
            path = folder / f"m{k}.onnx"
            path.write_bytes(_external_model(loc).SerializeToString())
            for source in (str(path), path.read_bytes()):
                with pytest.raises(lathe.ModelError, match="external data"):
                    load_onnx(source)
                refused += 1
    finally:
        _AUDITING.clear()
    root = os.path.realpath(folder)

    def inside(p: str) -> bool:
        if not os.path.isabs(p):  # os.open(name, dir_fd=d) reports only the name: lathe walks down from the
            return os.sep not in p and p not in (".", "..")  # folder's descriptor one plain component at a time
        return os.path.commonpath([root, os.path.realpath(p)]) == root

    outside = [p for p in _OPENED if not inside(p)]
    print(f"\nhostile external-data locations refused: {refused} of {2 * len(HOSTILE)}; "
          f"files opened outside the model folder: {len(outside)}")
    assert refused == 2 * len(HOSTILE) == 40
    assert any(p.endswith("m0.onnx") for p in _OPENED), "the audit hook saw no file opened at all"
    assert not outside, outside


# ---------------------------------------------------------------------------- resource bombs

def _bombs() -> list:
    """(name, model bytes): 100 models that claim far more than any machine has."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    F = onnx.TensorProto.FLOAT

    def model(nodes, inputs, outputs, inits=()):
        g = helper.make_graph(nodes, "bomb", inputs, outputs, list(inits))
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

    def io(name, shape, dtype=F):
        return helper.make_tensor_value_info(name, dtype, shape)

    relu = [helper.make_node("Relu", ["x"], ["y"])]
    bombs = []
    for k in range(20):  # inputs with 1e10 .. 1e13 elements
        shape = [10 ** (5 + k % 4), 10 ** (5 + k % 3)] + [2] * (k % 5)
        bombs.append((f"input-{shape}", model(relu, [io("x", shape)], [io("y", shape)])))
    for rank in range(17, 27):  # rank past the limit, each dim 1
        bombs.append((f"rank-{rank}", model(relu, [io("x", [1] * rank)], [io("y", [1] * rank)])))
    for k, dt in enumerate([onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.INT64,
                            onnx.TensorProto.UINT8] * 5):  # initializers whose dims claim >= 2 GiB, with no data
        w = onnx.TensorProto(name="w", data_type=dt, dims=[2 ** (31 + k % 3), 1 + k % 2])
        bombs.append((f"initializer-claim-{k}", model([helper.make_node("Add", ["x", "w"], ["y"])],
                                                      [io("x", [1])], [io("y", [1])], [w])))
    for k in range(10):  # ConstantOfShape folding to 1e12 elements
        shape = numpy_helper.from_array(np.array([10 ** 6, 10 ** 6 + k], np.int64), "s")
        bombs.append((f"constant-of-shape-{k}", model([helper.make_node("ConstantOfShape", ["s"], ["y"])],
                                                      [], [io("y", [10 ** 6, 10 ** 6 + k])], [shape])))
    for k in range(10):  # Expand of an input to a huge shape
        shape = numpy_helper.from_array(np.array([10 ** 7, 10 ** 6 + k], np.int64), "s")
        bombs.append((f"expand-{k}", model([helper.make_node("Expand", ["x", "s"], ["y"])],
                                           [io("x", [1, 1])], [io("y", [10 ** 7, 10 ** 6 + k])], [shape])))
    for k in range(10):  # Resize upscaling by 1e5 per axis
        scales = numpy_helper.from_array(np.array([1, 1, 1e5, 1e5 + k], np.float32), "sc")
        bombs.append((f"resize-{k}", model([helper.make_node("Resize", ["x", "", "sc"], ["y"])],
                                           [io("x", [1, 1, 8, 8])], [io("y", None)], [scales])))
    for k in range(10):  # Pad by 1e6 on each side of two axes
        pads = numpy_helper.from_array(np.array([10 ** 6, 10 ** 6 + k, 10 ** 6, 10 ** 6], np.int64), "p")
        bombs.append((f"pad-{k}", model([helper.make_node("Pad", ["x", "p"], ["y"])],
                                        [io("x", [4, 4])], [io("y", None)], [pads])))
    one = helper.make_node("Relu", ["x"], ["x"])
    for k in range(10):  # node counts past the limit, from 200,001 to 1,000,000
        g = helper.make_graph([], "bomb", [io("x", [1])], [io("x", [1])])
        g.node.extend([one] * (200_001 + k * 88_888))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        bombs.append((f"nodes-{len(g.node)}", m.SerializeToString()))
    return bombs


def test_resource_bombs_are_rejected_fast_and_small() -> None:
    import time
    import tracemalloc

    import lathe

    bombs = _bombs()
    slow, big = [], []
    for name, data in bombs:
        tracemalloc.start()
        t0 = time.perf_counter()
        with pytest.raises(lathe.ModelError, match="limit"):  # lathe.Limits, or an op's int32 index limit
            lathe.compile(data, "llvm")
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if seconds > 1.0:
            slow.append(f"{name}: {seconds:.2f} s")
        if peak > 256 << 20:
            big.append(f"{name}: {peak / 2**20:.0f} MiB")
    print(f"\nresource bombs rejected: {len(bombs)} of {len(bombs)}; over 1 s: {len(slow)}; over 256 MiB: {len(big)}")
    assert len(bombs) == 100
    assert not slow and not big, slow + big


def test_external_data_of_the_wrong_size_is_refused_before_reading(tmp_path) -> None:
    import numpy as np

    import lathe

    (tmp_path / "weights.bin").write_bytes(np.zeros(1000, np.float32).tobytes())  # 4,000 bytes for a 16-byte tensor
    path = tmp_path / "m.onnx"
    path.write_bytes(_external_model("weights.bin").SerializeToString())
    with pytest.raises(lathe.ModelError, match="4000 bytes there.*need 16"):
        lathe.compile(str(path))


# ---------------------------------------------------------------------------- names lathe writes

def _named_model(name: str, role: str):
    """A small model with `name` as its graph input, output, node or initializer name (the others plain)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    inp, out, node, init = (name if role == r else d for r, d in
                            (("input", "x"), ("output", "y"), ("node", "add"), ("initializer", "w")))
    graph = helper.make_graph([helper.make_node("Add", [inp, init], ["a"], name=node),
                               helper.make_node("Relu", ["a"], [out], name="relu")], "g",
                              [helper.make_tensor_value_info(inp, onnx.TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, [4])],
                              [numpy_helper.from_array(np.arange(4, dtype=np.float32), init)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


ARTIFACT_FILES = {"graph.json", "params.bin", "kernels.so", "manifest.json"}
ROLES = ("input", "output", "node", "initializer")


def test_hostile_tensor_names_write_nothing_outside_the_output_folder(tmp_path, monkeypatch) -> None:
    """The 20 hostile external-data locations as input, output, node and initializer names: compiled and saved
    (`mod.save`, `lathe compile -o`, `lathe run --output`), no file is opened for writing outside the output folder
    or lathe's cache, no compiler is handed a path built from a name, and each folder holds exactly the artifact."""
    import sys

    import numpy as np

    import lathe
    from lathe import cli

    cache = tmp_path / "cache"
    monkeypatch.setenv("LATHE_CACHE_DIR", str(cache))
    models = tmp_path / "models"
    models.mkdir()
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED.append(True)
    for k, name in enumerate(HOSTILE):  # written before auditing starts: only lathe's writes are recorded
        for role in ROLES:
            (models / f"{k}-{role}.onnx").write_bytes(_named_model(name, role).SerializeToString())
    x = np.arange(4, dtype=np.float32) - 2
    np.save(tmp_path / "x.npy", x)
    saved = refused = 0
    allowed = [tmp_path / "out"]
    _WRITTEN.clear()
    _SPAWNED.clear()
    _AUDITING.append(True)
    try:
        for k, name in enumerate(HOSTILE):
            for role in ROLES:
                out = tmp_path / "out" / f"{k}-{role}"
                path = models / f"{k}-{role}.onnx"
                try:
                    mod = lathe.compile(str(path), "llvm")
                except lathe.ModelError:  # an empty name is not a valid tensor name: refused, nothing written
                    refused += 1
                    continue
                np.testing.assert_array_equal(mod(x), np.maximum(2 * x + 2, 0))
                mod.save(str(out / "api"))
                assert cli.main(["compile", str(path), "-o", str(out / "cli")]) == 0
                assert cli.main(["run", str(out / "cli"), "--input", f"{mod.input_names[0]}={tmp_path / 'x.npy'}",
                                 "--output", str(out / "y.npy")]) == 0
                np.testing.assert_array_equal(np.load(out / "y.npy"), np.maximum(2 * x + 2, 0))
                for folder in (out / "api", out / "cli"):
                    assert {p.name for p in folder.iterdir()} == ARTIFACT_FILES, f"{name!r} as {role}"
                    np.testing.assert_array_equal(lathe.load(str(folder))(x), np.maximum(2 * x + 2, 0))
                assert {p.name for p in out.iterdir()} == {"api", "cli", "y.npy"}
                saved += 1
    finally:
        _AUDITING.clear()
    roots = [os.path.realpath(p) for p in (*allowed, cache)]

    def inside(p: str) -> bool:
        return p == os.devnull or any(os.path.commonpath([r, os.path.realpath(p)]) == r for r in roots)

    outside = [w for w in _WRITTEN if not inside(w[0])]
    stray = [argv for argv in _SPAWNED for a in argv[1:] if a.startswith(("/", ".")) and not inside(a)]
    print(f"\nhostile tensor names: {len(HOSTILE)} names x {len(ROLES)} roles; {saved} compiled, saved twice and "
          f"run through the CLI, {refused} refused as invalid; {len(_WRITTEN)} opens for writing, "
          f"{len(outside)} outside the output folders; {len(_SPAWNED)} subprocesses, {len(stray)} with outside paths")
    assert saved + refused == len(HOSTILE) * len(ROLES) and saved >= len(ROLES) * (len(HOSTILE) - 1)
    assert not outside, outside[:5]
    assert not stray, stray[:5]


def test_links_swapped_in_after_the_check_are_not_followed(tmp_path, monkeypatch) -> None:
    """The check-then-open race: the location is resolved and checked, then a component is replaced by a link
    before the open. Simulated by making realpath see no links; the component-wise O_NOFOLLOW open still
    refuses each link, and a FIFO is refused without blocking the open."""
    import signal

    import numpy as np

    import lathe
    from lathe.frontend import onnx as frontend

    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (folder / "link_out.bin").symlink_to(secret)
    (folder / "dirlink").symlink_to(tmp_path)
    os.mkfifo(folder / "fifo.bin")
    (folder / "weights.bin").write_bytes(np.ones(4, np.float32).tobytes())
    monkeypatch.setattr(frontend.os.path, "realpath", os.path.abspath)  # the checks now see the pre-swap path
    signal.alarm(20)  # a blocking FIFO open would hang the test
    try:
        for loc in ("link_out.bin", "dirlink/secret.bin", "fifo.bin"):
            path = folder / f"{loc.replace('/', '_')}.onnx"
            path.write_bytes(_external_model(loc).SerializeToString())
            with pytest.raises(lathe.ModelError, match="cannot be read|not a regular file"):
                frontend.load_onnx(str(path))
        ok = folder / "ok.onnx"
        ok.write_bytes(_external_model("weights.bin").SerializeToString())
        x = np.zeros(4, np.float32)
        np.testing.assert_array_equal(lathe.compile(str(ok), "llvm")(x), np.ones(4, np.float32))
    finally:
        signal.alarm(0)
