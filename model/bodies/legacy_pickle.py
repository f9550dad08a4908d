"""Reading the body-model pickles as they are distributed, without chumpy and without running arbitrary code.

The MPI files (FLAME `generic_model.pkl`, RingNet landmark embeddings) are Python-2 pickles: arrays reference
`numpy.core.multiarray`, `shapedirs` is a `chumpy.ch.Ch`, `J_regressor` is a `scipy.sparse.csc.csc_matrix` under
scipy's removed private path, and strings need `encoding='latin1'`. DECA's `landmark_embedding.npy` holds torch
tensors. `LegacyUnpickler` resolves only an allow-list of globals; chumpy and scipy objects become small shims that
`to_plain` turns into ndarrays. Anything else in the stream is refused with a clear error.
"""
from __future__ import annotations

import copyreg
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list (it may execute code, or it is not a body model)."""


class ChumpyArray:
    """Stand-in for `chumpy.ch.Ch`: keeps the pickled state; the array lives in `state['x']`."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.__dict__["x"], dtype=dtype)


class LegacySparse:
    """Stand-in for an old scipy sparse matrix; converted to `scipy.sparse.csc_matrix` by `to_plain`."""

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


def _load_torch_storage(data: bytes) -> Any:
    import torch  # lazy: only DECA's landmark_embedding.npy needs it

    return torch.load(io.BytesIO(data), weights_only=True)


def _rebuild_tensor_v2(storage: Any, offset: int, size: Any, stride: Any, *args: Any) -> np.ndarray:
    import torch

    t = torch.empty((0,), dtype=storage.dtype).set_(storage, offset, size, stride)
    return t.numpy().copy()


def _numpy_reconstruct() -> Any:
    from numpy._core import multiarray

    return multiarray._reconstruct


def _numpy_scalar() -> Any:
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
    ("collections", "OrderedDict"): dict,
    ("chumpy.ch", "Ch"): ChumpyArray,
    ("scipy.sparse.csc", "csc_matrix"): LegacySparse,
    ("scipy.sparse._csc", "csc_matrix"): LegacySparse,
    ("scipy.sparse.csr", "csr_matrix"): LegacySparseCsr,
    ("scipy.sparse._csr", "csr_matrix"): LegacySparseCsr,
    ("torch.storage", "_load_from_bytes"): _load_torch_storage,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
}
_LAZY: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class LegacyUnpickler(pickle.Unpickler):
    """Unpickler restricted to the globals that body-model and landmark files legitimately use."""

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if key in _LAZY:
            return _LAZY[key]()
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: not part of a FLAME/SMPL-X/landmark file "
            f"(only numpy arrays, chumpy arrays, scipy sparse matrices and torch tensors are accepted)"
        )


def to_plain(obj: Any) -> Any:
    """Replace chumpy/scipy shims (recursively through dicts and lists) with ndarrays / scipy matrices."""
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


def load_legacy_pickle(path: str | Path) -> Any:
    """Load a (possibly Python-2) body-model pickle with the allow-list, returning plain Python/numpy objects."""
    with open(path, "rb") as fh:
        return to_plain(LegacyUnpickler(fh, encoding="latin1").load())


def load_object_npy(path: str | Path) -> Any:
    """Load an `.npy` file that holds a pickled object (a dict), through the allow-list instead of np.load."""
    from numpy.lib import format as npformat

    with open(path, "rb") as fh:
        version = npformat.read_magic(fh)
        read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
        shape, _fortran, dtype = read_header(fh)
        if dtype.hasobject:
            obj = LegacyUnpickler(fh, encoding="latin1").load()
            if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
                obj = obj[()]
            return to_plain(obj)
        count = int(np.prod(shape)) if shape else 1
        return np.fromfile(fh, dtype=dtype, count=count).reshape(shape)


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us control how globals and strings are written
    """Writes protocol-2 pickles as Python 2 + numpy 1.x + chumpy + old scipy did (for byte-faithful fixtures).

    Globals are written under their historic names (`numpy.core.multiarray`, `copy_reg`, `chumpy.ch.Ch`,
    `scipy.sparse.csc.csc_matrix`) and byte strings as Python-2 `str` opcodes, so loading needs
    `encoding='latin1'` and a chumpy/scipy remapping exactly like the released FLAME files.
    """

    dispatch = pickle._Pickler.dispatch.copy()
    _RENAMES = {
        ("numpy._core.multiarray", "_reconstruct"): ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"): ("numpy.core.multiarray", "scalar"),
        ("copyreg", "_reconstructor"): ("copy_reg", "_reconstructor"),
        ("builtins", "object"): ("__builtin__", "object"),
        ("builtins", "set"): ("__builtin__", "set"),
    }

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is ChumpyArray:
            module, qual = "chumpy.ch", "Ch"
        elif obj is LegacySparse:
            module, qual = "scipy.sparse.csc", "csc_matrix"
        else:
            module, qual = pickle.whichmodule(obj, name or obj.__qualname__), name or obj.__qualname__
            module, qual = self._RENAMES.get((module, qual), (module, qual))
        self.write(pickle.GLOBAL + module.encode("ascii") + b"\n" + qual.encode("ascii") + b"\n")
        self.memoize(obj)

    python2_strings = True

    def save_py2_str(self, obj: bytes) -> None:
        if not self.python2_strings:
            return pickle._Pickler.save_bytes(self, obj)
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


class _Py2Object:
    """An object pickled the Python-2 way: copy_reg._reconstructor(cls, object, None) + BUILD(state)."""

    def __init__(self, cls: type, state: dict[str, Any]) -> None:
        self.cls, self.state = cls, state

    def __reduce_ex__(self, protocol: int) -> tuple:
        return copyreg._reconstructor, (self.cls, object, None), self.state


def chumpy_array(x: np.ndarray) -> _Py2Object:
    """Something that pickles like a `chumpy.ch.Ch` wrapping `x` (state keys as chumpy writes them)."""
    return _Py2Object(ChumpyArray, {"x": np.asarray(x), "_dirty_vars": set(), "_itr": None,
                                    "_make_dense": False, "_make_sparse": False, "_depends_on_deps": {}})


def old_scipy_csc(m: scipy.sparse.spmatrix) -> _Py2Object:
    """Something that pickles like a `scipy.sparse.csc.csc_matrix` from scipy < 1.8."""
    c = scipy.sparse.csc_matrix(m)
    return _Py2Object(LegacySparse, {"_shape": tuple(int(s) for s in c.shape), "maxprint": 50, "format": "csc",
                                     "data": c.data, "indices": c.indices, "indptr": c.indptr})


def dump_py2_pickle(obj: Any, path: str | Path) -> None:
    """Write `obj` as a Python-2 style protocol-2 pickle (see `_Py2Pickler`)."""
    with open(path, "wb") as fh:
        _Py2Pickler(fh, protocol=2).dump(obj)


def dump_numpy1_pickle(obj: Any, path: str | Path, protocol: int = 3) -> None:
    """Write a Python-3 pickle whose arrays reference `numpy.core.multiarray`, as files made with numpy 1.x do."""
    with open(path, "wb") as fh:
        pickler = _Py2Pickler(fh, protocol=protocol)
        pickler.python2_strings = False
        pickler.dump(obj)
