"""The one reading path for every pickle-bearing file the project accepts; no file ever runs code.

Formats: body-model pickles (FLAME `generic_model.pkl` and its landmark embeddings, SMPL-X `.pkl`), numpy `.npy` /
`.npz` files with object arrays (SMPL-X, the FaceScape bilinear model, DECA's embedding), THuman SMPL-X fits,
camera-trajectory `.pkl` files, our `training_state.pt`, and released PyTorch / PyTorch Lightning checkpoints (zip
and legacy torch.save formats).

`SafeUnpickler` resolves globals from an allow-list of data builders only (numpy arrays, dtypes and scalars, plain
containers, torch tensor rebuilds over storages read from the file, chumpy / old-scipy shims). Anything else is
either refused (the default, for every format whose content we know) or becomes an inert `Placeholder` that records
the name, arguments and state the file gave it (`placeholders`, for Lightning checkpoints, whose callbacks,
loops and hyper-parameters may hold any class). Nothing named by a file is ever imported or called.
"""
from __future__ import annotations

import copyreg
import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
import scipy.sparse

from storage.errors import CorruptFileError, DataError, MissingFileError


class UnsafePickleError(DataError, pickle.UnpicklingError):
    """A pickle that names a global outside the allow-list (it may run code, or it is not the expected file)."""


# ----------------------------------------------------------------------------------------------------------------
# inert stand-ins


class Placeholder:
    """An object of a class the file names but we never import: keeps what the file gave it, does nothing."""

    module = "?"
    name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Placeholder":
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.elements = args, kwargs, None, {}, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args); __new__ kept them
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        self.elements.extend(values)

    def __repr__(self) -> str:
        return f"<placeholder {self.module}.{self.name}>"


_PLACEHOLDER_TYPES: dict[tuple[str, str], type] = {}


def placeholder_type(module: str, name: str) -> type:
    """One inert class per (module, name); its instances are `Placeholder`s."""
    key = (module, name)
    if key not in _PLACEHOLDER_TYPES:
        _PLACEHOLDER_TYPES[key] = type(f"Placeholder[{module}.{name}]", (Placeholder,),
                                       {"module": module, "name": name})
    return _PLACEHOLDER_TYPES[key]


class ChumpyArray:
    """Stand-in for `chumpy.ch.Ch`: keeps the pickled state; the array lives in `state['x']`."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.__dict__["x"], dtype=dtype)


class LegacySparse:
    """Stand-in for an old scipy sparse matrix; turned into `scipy.sparse.csc_matrix` by `to_plain`."""

    format = "csc"

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def to_scipy(self) -> scipy.sparse.spmatrix:
        d = self.__dict__
        shape = tuple(int(s) for s in d.get("_shape", d.get("shape")))
        cls = scipy.sparse.csr_matrix if self.format == "csr" else scipy.sparse.csc_matrix
        return cls((np.asarray(d["data"]), np.asarray(d["indices"]), np.asarray(d["indptr"])), shape=shape)


class LegacySparseCsr(LegacySparse):
    format = "csr"


def to_plain(obj: Any) -> Any:
    """Replace chumpy / scipy shims (recursively through dicts, lists and tuples) with ndarrays / scipy matrices."""
    if isinstance(obj, ChumpyArray):
        return np.asarray(obj)
    if isinstance(obj, LegacySparse):
        return obj.to_scipy()
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    return obj


# ----------------------------------------------------------------------------------------------------------------
# the allow-list: data builders only


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes; only latin-1 (no codec look-up by name)."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_reconstruct() -> Callable:
    from numpy._core import multiarray

    return multiarray._reconstruct


def _numpy_scalar() -> Callable:
    from numpy._core import multiarray

    return multiarray.scalar


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): OrderedDict,
    ("chumpy.ch", "Ch"): ChumpyArray,
    ("scipy.sparse.csc", "csc_matrix"): LegacySparse,
    ("scipy.sparse._csc", "csc_matrix"): LegacySparse,
    ("scipy.sparse.csr", "csr_matrix"): LegacySparseCsr,
    ("scipy.sparse._csr", "csr_matrix"): LegacySparseCsr,
    ("trimesh.caching", "TrackedArray"): np.ndarray,  # an ndarray subclass; the plain array is what we want
}
_LAZY: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


# ----------------------------------------------------------------------------------------------------------------
# torch: storages come from the file (persistent ids); tensors are views of them


class _StorageType:
    """What a `torch.<X>Storage` global resolves to: only its element type."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype


class _TensorType:
    """`torch.Tensor` / `torch.nn.Parameter` named as the target type of a rebuild: the result stays a tensor."""


def _torch_globals() -> dict[tuple[str, str], Any]:
    import torch

    out: dict[tuple[str, str], Any] = {}
    for name, dtype in torch.storage._storage_type_to_dtype_map().items():
        out[("torch", name)] = _StorageType(dtype)
    out[("torch", "UntypedStorage")] = _StorageType(torch.uint8)
    out[("torch.storage", "UntypedStorage")] = _StorageType(torch.uint8)
    for value in vars(torch).values():
        if isinstance(value, torch.dtype):
            out[("torch", str(value).removeprefix("torch."))] = value
    out.update({
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): _TensorType,
        ("torch.nn.parameter", "Parameter"): _TensorType,
        ("torch", "Size"): tuple,
        ("torch", "device"): str,
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    })
    return out


def _flat(storage: Any) -> Any:
    import torch

    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise pickle.UnpicklingError("a tensor rebuild without a storage from the file")
    return storage


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *_: Any) -> Any:
    """torch._utils._rebuild_tensor(_v2): a view of a typed storage (bounds checked by as_strided)."""
    return _flat(storage).as_strided(tuple(size), tuple(stride), int(offset))


def _rebuild_tensor_v3(storage: Any, offset: int, size: Any, stride: Any, requires_grad: Any, hooks: Any,
                       dtype: Any, *_: Any) -> Any:
    """torch._utils._rebuild_tensor_v3: an untyped (byte) storage viewed as `dtype`."""
    import torch

    if not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError("_rebuild_tensor_v3 without a torch dtype")
    return _flat(storage).view(dtype).as_strided(tuple(size), tuple(stride), int(offset))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if func not in (_rebuild_tensor, _rebuild_tensor_v3, _rebuild_parameter):
        raise pickle.UnpicklingError("_rebuild_from_type_v2 with a function outside the allow-list")
    return func(*args)


def _load_from_bytes(data: bytes) -> Any:
    """`torch.storage._load_from_bytes` (how DECA's embedding stores tensors): a nested legacy torch file."""
    return _read_torch_stream(io.BytesIO(data), "<embedded torch bytes>", placeholders=False, mmap_path=None)


# ----------------------------------------------------------------------------------------------------------------
# the unpickler


class SafeUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose globals come from the allow-list; others refused, or inert placeholders
    (`placeholders=True`)."""

    def __init__(self, file: IO[bytes], source: str | Path, placeholders: bool = False, torch_ok: bool = False,
                 persistent_load: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file, encoding="latin1")
        self.source, self.placeholders = source, placeholders
        self._torch = _torch_globals() if torch_ok else {}
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if key in _LAZY:
            return _LAZY[key]()
        if key in self._torch:
            return self._torch[key]
        if not self.placeholders:
            raise UnsafePickleError(self.source, f"refusing to load global {module}.{name} (only arrays, tensors and "
                                                 "plain containers are read; a file naming other code may run it)",
                                    "use the original file; this one was modified or is of another kind")
        return placeholder_type(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise pickle.UnpicklingError(f"persistent id {str(pid)[:80]} in a plain pickle")
        return self._persistent(pid)


def _fail(path: str | Path, what: str, exc: BaseException, fix: str) -> DataError:
    if isinstance(exc, DataError):
        return exc
    return CorruptFileError(path, f"cannot be read as {what} ({type(exc).__name__}: {exc})", fix)


_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                  struct.error, UnicodeDecodeError, OverflowError, MemoryError, RuntimeError)


def loads_pickle(data: bytes, source: str, placeholders: bool = False) -> Any:
    """Unpickle bytes through the allow-list (shims left in place: see `to_plain`)."""
    return SafeUnpickler(io.BytesIO(data), source, placeholders=placeholders).load()


def load_pickle(path: str | Path, what: str = "a pickle", fix: str = "use the original file",
                placeholders: bool = False) -> Any:
    """A (possibly Python-2) pickle file as plain Python / numpy objects (chumpy and scipy shims converted)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{what} not found", fix)
    try:
        with open(path, "rb") as fh:
            return to_plain(SafeUnpickler(fh, path, placeholders=placeholders, torch_ok=True).load())
    except _PICKLE_ERRORS as exc:
        raise _fail(path, what, exc, fix) from exc


# ----------------------------------------------------------------------------------------------------------------
# numpy .npy / .npz


def _read_npy(fh: IO[bytes], source: str | Path, reopen: Callable[[], IO[bytes]]) -> np.ndarray | Any:
    from numpy.lib import format as npformat

    version = npformat.read_magic(fh)
    header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
    shape, _fortran, dtype = header(fh)
    if dtype.hasobject:  # numpy writes the object array itself as one pickle after the header
        obj = SafeUnpickler(fh, source, placeholders=False, torch_ok=True).load()
        if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
            obj = obj[()]
        return to_plain(obj)
    with reopen() as again:
        return npformat.read_array(again, allow_pickle=False)


def load_npy(path: str | Path, what: str = "an .npy file", fix: str = "use the original file") -> Any:
    """An `.npy` file; an object array (e.g. a pickled dict) goes through the allow-list, never `allow_pickle`."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{what} not found", fix)
    try:
        with open(path, "rb") as fh:
            return _read_npy(fh, path, lambda: open(path, "rb"))
    except _PICKLE_ERRORS as exc:
        raise _fail(path, what, exc, fix) from exc


def load_npz(path: str | Path, what: str = "an .npz archive", fix: str = "use the original file") -> dict[str, Any]:
    """Every array of an `.npz`; object arrays are unpickled through the allow-list (never `allow_pickle=True`)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{what} not found", fix)
    try:
        out: dict[str, Any] = {}
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    continue
                with zf.open(name) as fh:
                    out[name[:-4]] = _read_npy(fh, f"{path}:{name}", lambda n=name: zf.open(n))
        return out
    except (zipfile.BadZipFile, OSError) + _PICKLE_ERRORS as exc:
        raise _fail(path, what, exc, fix) from exc


def npz_shapes(path: str | Path, what: str = "an .npz archive", fix: str = "use the original file"
               ) -> dict[str, tuple[int, ...]]:
    """The shape of every array of an `.npz`, from the headers only (a large model is not loaded for this)."""
    from numpy.lib import format as npformat

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{what} not found", fix)
    try:
        out = {}
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith(".npy"):
                    with zf.open(name) as fh:
                        version = npformat.read_magic(fh)
                        header = npformat.read_array_header_1_0 if version == (1, 0) else \
                            npformat.read_array_header_2_0
                        out[name[:-4]] = tuple(header(fh)[0])
        return out
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _fail(path, what, exc, fix) from exc


# ----------------------------------------------------------------------------------------------------------------
# torch files: zip archives (torch >= 1.6, memory-mapped) and the legacy sequential format

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_FIX = "use the original file (a torch.save / PyTorch Lightning checkpoint)"


def _zip_member_offset(raw: IO[bytes], info: zipfile.ZipInfo, file_size: int) -> int:
    """Where a stored (uncompressed) member's bytes start in the archive file."""
    raw.seek(info.header_offset)
    head = raw.read(30)
    if len(head) != 30 or head[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > file_size:
        raise zipfile.BadZipFile(f"{info.filename} runs past the end of the file (truncated)")
    return start


def _read_torch_zip(path: Path, placeholders: bool, mmap: bool) -> Any:
    import torch

    file_size = path.stat().st_size
    with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise CorruptFileError(path, "zip archive without exactly one <name>/data.pkl (not a torch.save file)",
                                   TORCH_FIX)
        prefix = pkl[0][: -len("data.pkl")]
        order = f"{prefix}byteorder"
        if order in zf.namelist() and zf.read(order).strip() not in (b"little", b""):
            raise CorruptFileError(path, "big-endian torch files are not supported", "re-save it on this machine")
        mapped = np.memmap(path, dtype=np.uint8, mode="c") if mmap and file_size else None
        cache: dict[str, Any] = {}

        def storage(pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
                raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:80]}")
            stype, key, numel = pid[1], str(pid[2]), int(pid[4])
            dtype = stype.dtype if isinstance(stype, _StorageType) else None
            if dtype is None:
                raise pickle.UnpicklingError(f"storage {key} has no allowed storage type")
            if key not in cache:
                info = zf.getinfo(f"{prefix}data/{key}")
                nbytes = numel * torch.empty((), dtype=dtype).element_size()
                if info.file_size < nbytes:
                    raise zipfile.BadZipFile(f"storage {key} holds {info.file_size} bytes, {nbytes} expected")
                start = _zip_member_offset(raw, info, file_size) if info.compress_type == zipfile.ZIP_STORED else -1
                itemsize = torch.empty((), dtype=dtype).element_size()
                if mapped is not None and start >= 0 and start % itemsize == 0:
                    flat = torch.from_numpy(mapped[start:start + nbytes])
                else:
                    flat = torch.frombuffer(bytearray(zf.read(info)[:nbytes]), dtype=torch.uint8) if nbytes else \
                        torch.empty(0, dtype=torch.uint8)
                cache[key] = flat.view(dtype) if nbytes else torch.empty(0, dtype=dtype)
            return cache[key]

        unpickler = SafeUnpickler(io.BytesIO(zf.read(pkl[0])), path, placeholders=placeholders, torch_ok=True,
                                  persistent_load=storage)
        return unpickler.load()


def _read_torch_stream(fh: IO[bytes], source: str | Path, placeholders: bool, mmap_path: Path | None) -> Any:
    """The legacy (pre-1.6) torch.save format: magic, protocol, sys info, the object, storage keys, raw storages."""
    import torch

    def next_pickle() -> Any:
        return SafeUnpickler(fh, source, placeholders=False).load()

    if next_pickle() != _LEGACY_MAGIC:
        raise CorruptFileError(source, "not a torch.save file (wrong magic number)", TORCH_FIX)
    next_pickle()  # protocol version
    next_pickle()  # sys info (endianness, type sizes)
    here = fh.tell()
    fh.seek(0, io.SEEK_END)
    remaining = fh.tell() - here
    fh.seek(here)
    storages: dict[str, Any] = {}

    def storage(pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:80]}")
        stype, key, numel = pid[1], str(pid[2]), int(pid[4])
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError(f"storage {key} has no allowed storage type")
        if key not in storages:
            if numel < 0 or numel * torch.empty((), dtype=stype.dtype).element_size() > remaining:
                raise EOFError(f"storage {key} claims {numel} elements, more than the file holds (truncated?)")
            storages[key] = torch.empty(numel, dtype=stype.dtype)
        root = storages[key]
        if view is not None:
            _view_key, offset, size = view
            return root[int(offset):int(offset) + int(size)]
        return root

    obj = SafeUnpickler(fh, source, placeholders=placeholders, torch_ok=True, persistent_load=storage).load()
    for key in next_pickle():
        buf = storages[str(key)]
        head = fh.read(8)
        if len(head) != 8:
            raise EOFError(f"storage {key}: the file ends before its data (truncated)")
        (numel,) = struct.unpack("<q", head)
        nbytes = numel * buf.element_size()
        if numel != buf.numel():
            raise pickle.UnpicklingError(f"storage {key}: {numel} elements stored, {buf.numel()} declared")
        data = fh.read(nbytes)
        if len(data) != nbytes:
            raise EOFError(f"storage {key}: the file ends inside its data (truncated)")
        if nbytes:
            buf.view(torch.uint8).copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    return obj


def load_torch(path: str | Path, placeholders: bool = False, mmap: bool = True, what: str = "a torch file",
               fix: str = TORCH_FIX) -> Any:
    """A torch.save file (zip or legacy) with tensors on the CPU, memory-mapped where possible; nothing it names is
    imported or called (`placeholders=True`: unknown classes become inert `Placeholder`s instead of an error)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, f"{what} not found", fix)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:2] == b"PK":
            return _read_torch_zip(path, placeholders, mmap)
        if head[:1] == b"\x80":
            with open(path, "rb") as fh:
                return _read_torch_stream(fh, path, placeholders, path)
        kind = "an empty file" if not head else "a text file" if all(32 <= b < 127 or b in b"\t\r\n" for b in head) \
            else "not a torch.save file"
        raise CorruptFileError(path, f"is {kind}, expected {what}", fix)
    except (zipfile.BadZipFile, OSError) + _PICKLE_ERRORS as exc:
        raise _fail(path, what, exc, fix) from exc
