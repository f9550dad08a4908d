"""Writing pickles the way the released body-model files were written (Python 2, numpy 1.x, chumpy, old scipy),
so the stand-in's files exercise exactly the reading path of the real ones (storage.safe_pickle).

Globals are written under their historic names (`numpy.core.multiarray`, `copy_reg`, `chumpy.ch.Ch`,
`scipy.sparse.csc.csc_matrix`) and byte strings as Python-2 `str` opcodes, so reading needs `encoding='latin1'`
and a chumpy / scipy remapping exactly like the released FLAME files.
"""
from __future__ import annotations

import copyreg
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse


class _ChumpyCh:
    """Written as `chumpy.ch.Ch`."""


class _OldCscMatrix:
    """Written as `scipy.sparse.csc.csc_matrix` (scipy < 1.8)."""


_HISTORIC_NAMES = {_ChumpyCh: ("chumpy.ch", "Ch"), _OldCscMatrix: ("scipy.sparse.csc", "csc_matrix")}


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us control how globals and strings are written
    dispatch = pickle._Pickler.dispatch.copy()
    _RENAMES = {
        ("numpy._core.multiarray", "_reconstruct"): ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"): ("numpy.core.multiarray", "scalar"),
        ("copyreg", "_reconstructor"): ("copy_reg", "_reconstructor"),
        ("builtins", "object"): ("__builtin__", "object"),
        ("builtins", "set"): ("__builtin__", "set"),
    }

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj in _HISTORIC_NAMES:
            module, qual = _HISTORIC_NAMES[obj]
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
    return _Py2Object(_ChumpyCh, {"x": np.asarray(x), "_dirty_vars": set(), "_itr": None,
                                  "_make_dense": False, "_make_sparse": False, "_depends_on_deps": {}})


def old_scipy_csc(m: scipy.sparse.spmatrix) -> _Py2Object:
    """Something that pickles like a `scipy.sparse.csc.csc_matrix` from scipy < 1.8."""
    c = scipy.sparse.csc_matrix(m)
    return _Py2Object(_OldCscMatrix, {"_shape": tuple(int(s) for s in c.shape), "maxprint": 50, "format": "csc",
                                      "data": c.data, "indices": c.indices, "indptr": c.indptr})


def dump_py2_pickle(obj: Any, path: str | Path) -> None:
    """Write `obj` as a Python-2 style protocol-2 pickle."""
    with open(path, "wb") as fh:
        _Py2Pickler(fh, protocol=2).dump(obj)


def dump_numpy1_pickle(obj: Any, path: str | Path, protocol: int = 3) -> None:
    """Write a Python-3 pickle whose arrays reference `numpy.core.multiarray`, as files made with numpy 1.x do."""
    with open(path, "wb") as fh:
        pickler = _Py2Pickler(fh, protocol=protocol)
        pickler.python2_strings = False
        pickler.dump(obj)


class PickledTorchTensor:
    """Pickles as the torch tensor it holds does (`torch._utils._rebuild_tensor_v2` over a legacy storage blob,
    as in DECA's `landmark_embedding.npy`), except for the storage's name inside the blob: torch names it by its
    memory address, which made the file differ from run to run; here it is always "0"."""

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor.contiguous()

    def __reduce__(self) -> tuple:
        import collections

        import torch

        t = self.tensor
        return (torch._utils._rebuild_tensor_v2,
                (_StorageBlob(_legacy_storage_blob(t)), 0, tuple(t.shape), t.stride(), False,
                 collections.OrderedDict()))


class _StorageBlob:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> tuple:
        import torch.storage

        return (torch.storage._load_from_bytes, (self.blob,))


def _legacy_storage_blob(tensor: Any) -> bytes:
    """torch.save(storage, legacy format) with the address-derived storage key replaced by "0"."""
    import io
    import struct
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated, but it is what Tensor.__reduce_ex__ saves
        storage = tensor.storage()
    buf = io.BytesIO()
    torch.save(storage, buf, _use_new_zipfile_serialization=False)
    key = str(tensor.untyped_storage()._cdata).encode()
    named = b"X" + struct.pack("<I", len(key)) + key
    blob = buf.getvalue()
    if blob.count(named) != 2:  # the persistent id and the list of storage keys
        raise RuntimeError(f"unexpected legacy torch storage layout ({blob.count(named)} key occurrences)")
    return blob.replace(named, b"X" + struct.pack("<I", 1) + b"0")
