"""The frozen encoders' work done once per view (issue 23, item 3).

Every training step encodes 16 target views and one input view per sample with the VAE encoder and the input with
CLIP, though both are frozen: the same view gives the same posterior moments and embedding every time it is drawn.
So each subject's views are encoded once — all of them, in fixed chunks in index order, so the values never depend
on which views a run happened to draw first (a resumed run equals an uninterrupted one) — and kept in memory and on
disk under `<storage>/encodings/<encoders>/<dataset>/<subject>-<store version>.npz`, keyed by the content hash of
the frozen encoders' weights and of the view store: a re-rendered store or another first stage is another file.
The posterior is still sampled per step from the cached moments (network.posterior_sample), with the same noise.
The encoders run in fp32 even in a bf16 run.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

CHUNK = 16  # views per encoder call: fixed, so a view's encoding never depends on its neighbours in the call


def encoders_key(model, image_size: int) -> str:
    """Content hash of what the cache holds the output of: the VAE's and CLIP's weights and the image size."""
    from storage.checkpoints import tensors_hash

    tensors = {f"first_stage_model.{k}": v for k, v in model.first_stage_model.state_dict().items()}
    tensors.update({f"clip_image_encoder.{k}": v for k, v in model.clip_image_encoder.state_dict().items()})
    return f"{tensors_hash(tensors)}-{image_size}"


class FrozenEncodings:
    """{subject: (moments (V, 8, h, w), clip (V, T, D))} for a MultiViewDataset's subjects, filled on first use."""

    def __init__(self, model, dataset, storage_root: str | Path | None, device: str) -> None:
        self.model, self.ds, self.device = model, dataset, device
        self.key = encoders_key(model, dataset.config.image_size)
        self.folder = Path(storage_root) / "encodings" / self.key / dataset.dataset if storage_root else None
        self._subjects: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.encoded_views = 0  # views this run encoded (the rest came from disk)

    def _path(self, subject: str) -> Path | None:
        if self.folder is None:
            return None
        version = self.ds.store(subject).manifest["content_hash"]
        return self.folder / f"{subject}-{version}.npz"

    def _encode(self, subject: str) -> tuple[np.ndarray, np.ndarray]:
        import torch

        n = len(self.ds.store(subject))
        moments, clips = [], []
        with torch.no_grad(), torch.autocast(self.device.split(":")[0], enabled=False):
            for start in range(0, n, CHUNK):
                x = torch.tensor(self.ds.images(subject, np.arange(start, min(start + CHUNK, n))),
                                 device=self.device).permute(0, 3, 1, 2)
                moments.append(self.model.encode_moments(x).cpu().numpy())
                clips.append(self.model.clip_embedding(x).float().cpu().numpy())
        self.encoded_views += n
        # C order, as they come back from disk: the encoder's output may be channels-last, and torch keeps a
        # numpy array's strides, which would send the training step's kernels down another (differently
        # rounding) path in the run that encoded than in the runs that read the file
        return np.ascontiguousarray(np.concatenate(moments)), np.ascontiguousarray(np.concatenate(clips))

    def subject(self, subject: str) -> tuple[np.ndarray, np.ndarray]:
        if subject in self._subjects:
            return self._subjects[subject]
        path = self._path(subject)
        arrays = None
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as f:
                    arrays = (f["moments"], f["clip"])
                if len(arrays[0]) != len(self.ds.store(subject)) or len(arrays[1]) != len(arrays[0]):
                    arrays = None
            except (OSError, ValueError, KeyError):  # a damaged cache file: encoded again and replaced
                arrays = None
        if arrays is None:
            arrays = self._encode(subject)
            if path is not None:
                from storage.atomic import atomic_write_bytes

                buffer = io.BytesIO()
                np.savez(buffer, moments=arrays[0], clip=arrays[1])
                atomic_write_bytes(path, buffer.getvalue())
        self._subjects[subject] = arrays
        return arrays

    def summary(self) -> str:
        return (f"frozen encodings ({self.key}): {len(self._subjects)} subjects, {self.encoded_views} views encoded "
                f"in this run, the rest read from {self.folder}")

    def batch(self, draws: list[tuple[str, np.ndarray, int]]) -> dict:
        """The training batch's encodings for draws (subject, target views, input view) (MultiViewDataset.draw)."""
        import torch

        target, inp, clip = [], [], []
        for subject, targets, in_view in draws:
            moments, clips = self.subject(subject)
            target.append(moments[targets])
            inp.append(moments[in_view])
            clip.append(clips[in_view])
        return {name: torch.tensor(np.ascontiguousarray(np.stack(a)), device=self.device)
                for name, a in (("target_moments", target), ("input_moments", inp), ("input_clip", clip))}
