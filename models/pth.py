"""Reads PyTorch `.pth` state dicts without PyTorch and without running pickled code.

torch.save writes a pickle whose tensors point at raw storages kept beside it: in a zip archive
(`<root>/data.pkl` and `<root>/data/<key>`, PyTorch 1.6 and later) or, in the legacy format, as
further records after the pickle in the same file. The unpickler below resolves only the globals
that rebuild tensors and ordered dicts; any other global (os.system, builtins.eval, a class of
the file's choosing) is refused before anything is called, the reader's own records refuse to have
their state set, and sizes are checked before bytes are read or copied, so a hostile file can do
no more than fail. Tensors come back as numpy arrays, checked to lie inside their storage.
"""
import collections
import io
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


# A data.pkl larger than this holds more than names and shapes (a 500 MB model's is ~30 KB).
MAX_PICKLE = 64 << 20
# Tensors may share a storage (tied weights), never many times over: what the tensors of a file
# hold together is bounded by this many times what its storages hold, so that a small file cannot
# ask for gigabytes through thousands of views of one storage.
MAX_VIEWS = 4


class PthError(ValueError):
    pass


class _Record:
    """The reader's own objects: a pickle's BUILD opcode must not set their attributes (it could
    change what a storage type reads as, or replace a method)."""

    def __setstate__(self, _state):
        raise PthError("refused: the file sets the state of a tensor or storage record")


class _StorageType(_Record):
    def __init__(self, name):
        self.name, self.dtype = name, STORAGES[name]

    def width(self):
        return 2 if self.dtype == "bf16" else np.dtype(self.dtype).itemsize


class _Storage(_Record):
    """A storage record: its element type and count from the pickle, its bytes once read."""

    def __init__(self, stype, key, numel):
        if numel < 0:
            raise PthError(f"storage {key} has {numel} elements")
        self.stype, self.key, self.numel, self.array = stype, key, numel, None

    def fill(self, raw):
        dt = self.stype.dtype
        width = self.stype.width()
        if len(raw) < self.numel * width:
            raise PthError(f"storage {self.key} holds {len(raw)} bytes, {self.numel} elements of {self.stype.name} need {self.numel * width}")
        raw = raw[:self.numel * width]
        if dt == "bf16":  # the upper half of an f32
            self.array = (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")
        else:
            self.array = np.frombuffer(raw, dt)


class _Tensor(_Record):
    """A tensor as the pickle describes it; its storage's bytes may come after the pickle."""

    def __init__(self, storage, offset, size, stride, *_rest):
        if not isinstance(storage, _Storage):
            raise PthError("a tensor whose storage is not a storage record")
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def array(self):
        size, stride, offset, a = self.size, self.stride, self.offset, self.storage.array
        if a is None:
            raise PthError(f"storage {self.storage.key} is missing from the file")
        if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0 or len(size) > 8:
            raise PthError(f"tensor of size {size} and stride {stride} is malformed")
        if int(np.prod(size, dtype=object)) > len(a):  # a zero stride repeats elements: no such tensor in a state dict
            raise PthError(f"tensor of size {size} has more elements than its storage of {len(a)}")
        last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
        if last >= len(a):
            raise PthError(f"tensor of size {size}, stride {stride} at offset {offset} overruns its storage of {len(a)}")
        view = np.lib.stride_tricks.as_strided(a[offset:], size, tuple(s * a.itemsize for s in stride), writeable=False)
        return np.array(view)


def _rebuild_parameter(data, *_rest):
    return data


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Tensor,
    ("torch._utils", "_rebuild_tensor"): _Tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """The pickle of a state dict; `storages` collects the storage records it names, by key."""

    def __init__(self, f):
        super().__init__(f)
        self.storages = {}

    def find_class(self, module, name):
        if module == "torch" and name in STORAGES:
            return _StorageType(name)  # a fresh one: nothing a file does to it outlives the file
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise PthError(f"refused: the file asks for {module}.{name}, which a state dict of tensors never needs") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise PthError(f"refused: persistent id {pid!r:.80} is not a tensor storage")
        if len(pid) > 5 and pid[5] is not None:  # the legacy format's views into a larger storage
            raise PthError("a storage that is a view of another (legacy view metadata) is not supported")
        key = str(pid[2])
        return self.storages.setdefault(key, _Storage(pid[1], key, int(pid[4])))


def _zip(f):
    with zipfile.ZipFile(f) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise PthError("a zip archive without one <root>/data.pkl is not a torch.save file")
        root = pkl[0][: -len("data.pkl")]
        if z.getinfo(pkl[0]).file_size > MAX_PICKLE:
            raise PthError(f"{pkl[0]} is larger than {MAX_PICKLE >> 20} MB: not a state dict")
        u = _Unpickler(io.BytesIO(z.read(pkl[0])))
        obj, storages = u.load(), u.storages
        for key, s in storages.items():
            try:
                info = z.getinfo(f"{root}data/{key}")
            except KeyError:
                raise PthError(f"storage {key} is missing from the archive") from None
            # torch.save stores storages uncompressed and whole: anything else could inflate
            # far beyond the file's size before it is checked.
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != s.numel * s.stype.width():
                raise PthError(f"storage {key} is {info.file_size} bytes (compression {info.compress_type}), not the {s.numel * s.stype.width()} its tensor needs")
            s.fill(z.read(info))
    return obj, storages


class _Header(pickle.Unpickler):
    """The legacy format's records around the pickle: numbers, strings, a dict, a list."""

    def find_class(self, module, name):
        raise PthError(f"refused: the legacy header asks for {module}.{name}")


def _legacy(f):
    # A fresh unpickler for each record: one keeps its own read-ahead of the file.
    if _Header(f).load() != LEGACY_MAGIC:
        raise PthError("not a torch.save file (neither a zip archive nor the legacy magic number)")
    _Header(f).load()  # protocol version
    info = _Header(f).load()
    if isinstance(info, dict) and info.get("little_endian") is False:
        raise PthError("a big-endian legacy file is not supported")
    u = _Unpickler(f)
    obj, storages = u.load(), u.storages
    keys = _Header(f).load()
    if not isinstance(keys, list):
        raise PthError("legacy file without its list of storage keys")
    for key in keys:
        s = storages.get(key)
        head = f.read(8)
        if s is None or len(head) < 8:
            raise PthError(f"storage {key} follows the pickle but no tensor uses it, or the file ends")
        (numel,) = struct.unpack("<q", head)
        if numel != s.numel:
            raise PthError(f"storage {key} holds {numel} elements, the pickle says {s.numel}")
        s.fill(f.read(numel * s.stype.width()))
    return obj, storages


def _arrays(obj, done, budget):
    """The pickle's tensors as arrays, each converted once (a file may name one many times);
    `budget` is a one-element list of the elements they may still hold."""
    if isinstance(obj, _Tensor):
        if id(obj) not in done:
            budget[0] -= int(np.prod(obj.size, dtype=object))
            if budget[0] < 0:
                raise PthError(f"the tensors hold more than {MAX_VIEWS} times what the storages do")
            done[id(obj)] = obj.array()
        return done[id(obj)]
    if isinstance(obj, dict):
        return {k: _arrays(v, done, budget) for k, v in obj.items()}
    return obj


def load(path):
    """{name: numpy array} of the state dict in `path` (a dict of tensors, possibly nested under
    "state_dict")."""
    with open(path, "rb") as f:
        is_zip = zipfile.is_zipfile(f)
        f.seek(0)
        try:
            obj, storages = _zip(f) if is_zip else _legacy(f)
            if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
                obj = obj["state_dict"]
            total = sum(len(s.array) for s in storages.values() if s.array is not None)
            obj = _arrays(obj, {}, [MAX_VIEWS * total])
        except PthError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                OverflowError, MemoryError, RecursionError) as e:
            raise PthError(f"{path}: not a readable torch.save file ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
        raise PthError("the file holds no state dict of named tensors")
    return dict(obj)
