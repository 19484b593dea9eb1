"""models/pth.py on .pth files this test writes itself, without PyTorch: torch.save's two
serialisations, and hostile pickles that must be refused before anything they name is called.
(scripts/make_golden_efficientnet.py checks the same reader against torch.save's own files.)

    /usr/bin/python3 -m unittest discover -s models -p 'test_*.py'
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import tempfile
import types
import unittest
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert  # noqa: E402
import pth  # noqa: E402


def _fake_torch():
    """Stand-ins for the globals torch.save names, so that pickle writes the same references."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class HalfStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called by the writer")

    for obj, module in ((FloatStorage, "torch"), (HalfStorage, "torch"), (_rebuild_tensor_v2, "torch._utils")):
        obj.__module__, obj.__qualname__ = module, obj.__name__
    torch.FloatStorage, torch.HalfStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, HalfStorage, utils, _rebuild_tensor_v2
    return torch, utils


TORCH, UTILS = _fake_torch()


class Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array
        self.type = TORCH.HalfStorage if array.dtype == np.float16 else TORCH.FloatStorage


class Tensor:
    """Pickles as torch.Tensor does: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return UTILS._rebuild_tensor_v2, self.args


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.type, obj.key, "cpu", obj.array.size)
        return None


def dumps(obj, protocol=2):
    saved = sys.modules.get("torch"), sys.modules.get("torch._utils")
    sys.modules["torch"], sys.modules["torch._utils"] = TORCH, UTILS
    try:
        buf = io.BytesIO()
        Pickler(buf, protocol=protocol).dump(obj)
        return buf.getvalue()
    finally:
        for name, mod in zip(("torch", "torch._utils"), saved):
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def write_zip(path, obj, storages, root="archive"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{root}/data.pkl", dumps(obj))
        for s in storages:
            z.writestr(f"{root}/data/{s.key}", s.array.tobytes())
        z.writestr(f"{root}/version", "3\n")


def write_legacy(path, obj, storages, header=None):
    with open(path, "wb") as f:
        for record in (pth.LEGACY_MAGIC, 1001, header or {"protocol_version": 1001, "little_endian": True}):
            f.write(pickle.dumps(record, protocol=2))
        f.write(dumps(obj))
        f.write(pickle.dumps([s.key for s in storages], protocol=2))
        for s in storages:
            f.write(struct.pack("<q", s.array.size) + s.array.tobytes())


def state():
    a = Storage("0", np.arange(12, dtype=np.float32) * 0.5)
    h = Storage("1", np.array([1, -2, 3.5], dtype=np.float16))
    sd = collections.OrderedDict()
    sd["conv.weight"] = Tensor(a, 0, (3, 4), (4, 1))
    sd["conv.t"] = Tensor(a, 1, (2, 3), (1, 4))  # a transposed view at an offset
    sd["bn.scale"] = Tensor(h, 0, (3,), (1,))
    want = {"conv.weight": np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5,
            "conv.t": np.array([[a.array[1 + i + 4 * j] for j in range(3)] for i in range(2)]),
            "bn.scale": np.array([1, -2, 3.5], dtype=np.float16)}
    return sd, [a, h], want


class Evil:
    """Pickles as a call of `fn(*args)`: what a hostile checkpoint does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class PthTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.marker = os.path.join(self.dir.name, "pwned")

    def tearDown(self):
        self.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def check(self, got, want):
        self.assertEqual(sorted(got), sorted(want))
        for k in want:
            self.assertEqual(got[k].dtype, want[k].dtype, k)
            np.testing.assert_array_equal(got[k], want[k], k)

    def test_zip_and_legacy_serialisations_read_the_same(self):
        sd, storages, want = state()
        write_zip(self.path("z.pth"), sd, storages)
        write_legacy(self.path("l.pth"), sd, storages)
        self.check(pth.load(self.path("z.pth")), want)
        self.check(pth.load(self.path("l.pth")), want)

    def test_a_checkpoint_holding_a_state_dict(self):
        sd, storages, want = state()
        write_zip(self.path("c.pth"), {"state_dict": sd, "epoch": 3}, storages)
        self.check(pth.load(self.path("c.pth")), want)

    def refused(self, path, needle):
        with self.assertRaises(pth.PthError) as e:
            pth.load(path)
        self.assertIn(needle, str(e.exception))
        self.assertFalse(os.path.exists(self.marker), "the pickle's code ran")

    def test_globals_other_than_tensor_rebuilds_are_refused(self):
        sd, storages, _ = state()
        sd["x"] = Evil(os.system, f"touch {self.marker}")
        write_zip(self.path("z.pth"), sd, storages)
        self.refused(self.path("z.pth"), "system")
        write_legacy(self.path("l.pth"), sd, storages)
        self.refused(self.path("l.pth"), "system")
        for protocol in (2, 4):  # GLOBAL and STACK_GLOBAL
            with zipfile.ZipFile(self.path(f"e{protocol}.pth"), "w") as z:
                z.writestr("archive/data.pkl", pickle.dumps(Evil(eval, f"open({self.marker!r}, 'w')"), protocol=protocol))
            self.refused(self.path(f"e{protocol}.pth"), "eval")

    def test_a_hostile_legacy_header_is_refused(self):
        sd, storages, _ = state()
        write_legacy(self.path("h.pth"), sd, storages, header=Evil(os.system, f"touch {self.marker}"))
        self.refused(self.path("h.pth"), "system")

    def test_malformed_files_are_clear_errors(self):
        sd, storages, _ = state()
        sd["conv.weight"] = Tensor(storages[0], 4, (3, 4), (4, 1))  # 4 + 11 is past the 12 elements
        write_zip(self.path("over.pth"), sd, storages)
        self.refused(self.path("over.pth"), "overruns")
        sd, storages, _ = state()
        write_zip(self.path("short.pth"), sd, storages[:1])
        self.refused(self.path("short.pth"), "missing")
        with open(self.path("junk.pth"), "wb") as f:
            f.write(b"not a checkpoint at all")
        self.refused(self.path("junk.pth"), "torch.save")
        with zipfile.ZipFile(self.path("pid.pth"), "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x02X\x03\x00\x00\x00abcQ.")  # persistent id "abc"
        self.refused(self.path("pid.pth"), "not a tensor storage")

    def test_small_files_cannot_ask_for_much_memory(self):
        sd, storages, _ = state()
        sd["conv.weight"] = Tensor(storages[0], 0, (65536, 65536), (0, 0))  # 16 GiB of one element
        write_zip(self.path("huge.pth"), sd, storages)
        self.refused(self.path("huge.pth"), "times what the storages do")
        sd, storages, _ = state()
        sd["conv.weight"] = Tensor(storages[0], 0, (4, 12), (0, 1))  # the storage 4 times over
        write_zip(self.path("stride0.pth"), sd, storages)
        self.refused(self.path("stride0.pth"), "more elements than its storage")
        sd, storages, _ = state()
        for i in range(20):  # one storage's bytes named 20 times over
            sd[f"view{i}"] = Tensor(storages[0], 0, (12,), (1,))
        write_zip(self.path("views.pth"), sd, storages)
        self.refused(self.path("views.pth"), "times what the storages do")
        sd, storages, _ = state()
        with zipfile.ZipFile(self.path("deflated.pth"), "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("archive/data.pkl", dumps(sd))
            for st in storages:
                z.writestr(f"archive/data/{st.key}", st.array.tobytes())
        self.refused(self.path("deflated.pth"), "compression")

    def test_the_file_cannot_set_the_readers_records(self):
        with zipfile.ZipFile(self.path("build.pth"), "w") as z:
            # GLOBAL torch FloatStorage; EMPTY_DICT; 'dtype' '<f2' SETITEM; BUILD; STOP
            z.writestr("archive/data.pkl", b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x03\x00\x00\x00<f2sb.")
        self.refused(self.path("build.pth"), "sets the state")

    def test_convert_writes_a_model_the_extension_reads(self):
        vgg = {f"features.{i}.{p}": np.ones(s, np.float32) for i, s in ((0, (4, 3, 3, 3)), (2, (4, 4, 3, 3)))
               for p, s in (("weight", s), ("bias", s[:1]))}
        sd = collections.OrderedDict()
        storages = []
        for n, (k, v) in enumerate(vgg.items()):
            storages.append(Storage(str(n), v.reshape(-1)))
            sd[k] = Tensor(storages[-1], 0, v.shape, tuple(int(x) // 4 for x in v.strides))
        sd["classifier.0.weight"] = sd["features.0.bias"]  # dropped: only the conv part is kept
        write_zip(self.path("vgg.pth"), sd, storages)
        sys.argv = ["convert.py", self.path("vgg.pth"), "--name", "v", "--out", self.dir.name, "--pooling", "max"]
        convert.main()
        with open(self.path("v/manifest.json")) as f:
            m = json.load(f)
        self.assertEqual((m["architecture"], m["dims"], m["batch_norm"]), ("vgg16", 512, False))
        with open(self.path("v/weights.safetensors"), "rb") as f:
            raw = f.read()
        (n,) = struct.unpack("<Q", raw[:8])
        self.assertEqual(sorted(json.loads(raw[8:8 + n])), sorted(vgg))


if __name__ == "__main__":
    unittest.main()
