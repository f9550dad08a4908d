"""Every coordinate transform of the pipeline (spec §0.1), in one place. Other modules get data already converted.

Frames
    SfM      FaceScape multi-view capture frame of one (subject, expression): arbitrary similarity of TU.
    TU       FaceScape registered / bilinear frame: mm, y up, face looks +z.
    CAP      "CAPSTUDIO" (DINER): metres, z up, face looks -y.  v_cap = F2C v_tu / 1000.
    MODEL    what the network sees. Faces: 2.5 x metres in TU orientation (y up, face +z): v = C2F (2.5 v_cap).
             Bodies (THuman): Blender world, z up, scaled by 0.6 / fit scale and centred on the SMPL-X box.
Cameras are OpenCV world-to-camera [R|t] (3x4). A similarity v' = s R_a v + t_a of the world changes an extrinsic to
R' = R R_a^T and t' = s t - R' t_a (camera coordinates scale by s; projections are unchanged).
"""
from __future__ import annotations

import numpy as np

F2C = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # FACESCAPE_2_CAPSTUDIO: (x, y, z) -> (x, -z, y)
C2F = F2C.T  # CAPSTUDIO_2_FACESCAPE
FACE_SCALE = 2.5  # model units per metre (faces)
TU_UNITS_PER_METRE = 1000.0
THUMAN_TARGET_SCALE = 0.6  # Blender normalisation: s = 0.6 / fit scale
THUMAN_Z_UP_FROM_UID = 526
Y_UP_TO_Z_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # +90 deg about x (Blender's OBJ import)
# Released inference alignment of MICA/metrical-tracker FLAME meshes into the FaceScape FLAME-fit frame (spec §5).
INFERENCE_FLAME_SCALE = 1.087
INFERENCE_FLAME_AXIS_ANGLE = np.array([1.6811, -0.026845, -0.028883])
INFERENCE_FLAME_TRANSLATION = np.array([0.00085418, -0.0034041, 0.010564])


def _points(v: np.ndarray, rot: np.ndarray, scale: float = 1.0, t: np.ndarray | None = None) -> np.ndarray:
    out = scale * np.asarray(v, np.float64) @ rot.T
    return out if t is None else out + t


def _extrinsics(rt: np.ndarray, rot: np.ndarray, scale: float = 1.0, t: np.ndarray | None = None) -> np.ndarray:
    """Extrinsic(s) (..., 3, 4) after the world moves by v' = scale rot v + t."""
    rt = np.asarray(rt, np.float64)
    r_new = rt[..., :3, :3] @ rot.T
    t_new = scale * rt[..., :3, 3]
    if t is not None:
        t_new = t_new - r_new @ t
    return np.concatenate([r_new, t_new[..., None]], axis=-1)


def similarity_inverse(scale: float, rot: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Inverse of v' = s R v + t."""
    return 1.0 / scale, rot.T, -(rot.T @ t) / scale


# --- FaceScape ------------------------------------------------------------------------------------------------

def sfm_to_tu_points(v: np.ndarray, scale: float, rt_align: np.ndarray) -> np.ndarray:
    """Rt_scale_dict convention: v_TU = R (s v_mv) + t."""
    return _points(v, rt_align[:, :3], scale, rt_align[:, 3])


def sfm_to_tu_extrinsics(rt: np.ndarray, scale: float, rt_align: np.ndarray) -> np.ndarray:
    return _extrinsics(rt, rt_align[:, :3], scale, rt_align[:, 3])


def tu_to_sfm_points(v: np.ndarray, scale: float, rt_align: np.ndarray) -> np.ndarray:
    s, r, t = similarity_inverse(scale, rt_align[:, :3], rt_align[:, 3])
    return _points(v, r, s, t)


def tu_to_cap_points(v: np.ndarray) -> np.ndarray:
    return _points(v, F2C, 1.0 / TU_UNITS_PER_METRE)


def tu_to_cap_extrinsics(rt: np.ndarray) -> np.ndarray:
    return _extrinsics(rt, F2C, 1.0 / TU_UNITS_PER_METRE)


def cap_to_model_points(v: np.ndarray) -> np.ndarray:
    return _points(v, C2F, FACE_SCALE)


def cap_to_model_extrinsics(rt: np.ndarray) -> np.ndarray:
    """The released loader's R_model = R_cap F2C, t_model = 2.5 t_cap."""
    return _extrinsics(rt, C2F, FACE_SCALE)


def model_to_cap_points(v: np.ndarray) -> np.ndarray:
    return _points(v, F2C, 1.0 / FACE_SCALE)


def model_to_cap_extrinsics(rt: np.ndarray) -> np.ndarray:
    return _extrinsics(rt, F2C, 1.0 / FACE_SCALE)


def tu_to_model_points(v: np.ndarray) -> np.ndarray:
    """TU millimetres -> model units: the same orientation, 2.5 / 1000 scale (C2F . F2C = I)."""
    return cap_to_model_points(tu_to_cap_points(v))


def tu_to_model_extrinsics(rt: np.ndarray) -> np.ndarray:
    return cap_to_model_extrinsics(tu_to_cap_extrinsics(rt))


def sfm_to_model_points(v: np.ndarray, scale: float, rt_align: np.ndarray) -> np.ndarray:
    return tu_to_model_points(sfm_to_tu_points(v, scale, rt_align))


def sfm_to_model_extrinsics(rt: np.ndarray, scale: float, rt_align: np.ndarray) -> np.ndarray:
    return tu_to_model_extrinsics(sfm_to_tu_extrinsics(rt, scale, rt_align))


def flame_to_model_points(v_flame: np.ndarray) -> np.ndarray:
    """FLAME fits made against TU meshes live in TU orientation in metres: model = 2.5 v."""
    return FACE_SCALE * np.asarray(v_flame, np.float64)


def inference_flame_to_model_points(v: np.ndarray) -> np.ndarray:
    """The release's hard-coded alignment of a MICA / metrical-tracker FLAME mesh (canonical frame) into the model
    frame: scale 1.087, rotate by the axis-angle (into CAPSTUDIO), translate, x2.5, C2F (spec §5)."""
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_rotvec(INFERENCE_FLAME_AXIS_ANGLE).as_matrix()
    cap = _points(v, rot, INFERENCE_FLAME_SCALE, INFERENCE_FLAME_TRANSLATION)
    return cap_to_model_points(cap)


def camera_angles_cap(rt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth, elevation) in degrees of cameras in the CAPSTUDIO frame (the released `get_cam_angles`):
    0 azimuth = frontal (looking along +y); positive azimuth = camera on the subject's left (+x)."""
    d = np.asarray(rt, np.float64)[..., 2, :3]
    ref = np.array([0.0, 1.0, 0.0])
    dh = d * np.array([1.0, 1.0, 0.0])
    dh /= np.linalg.norm(dh, axis=-1, keepdims=True)
    az = -np.sign(dh[..., 0]) * np.degrees(np.arccos(np.clip(dh @ ref, -1, 1)))
    dv = d * np.array([0.0, 1.0, 1.0])
    dv /= np.linalg.norm(dv, axis=-1, keepdims=True)
    el = np.sign(dv[..., 2]) * np.degrees(np.arccos(np.clip(dv @ ref, -1, 1)))
    return az, el


def camera_angles_model(rt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera angles of model-frame (face) extrinsics, measured as the release does (in CAPSTUDIO)."""
    return camera_angles_cap(model_to_cap_extrinsics(rt))


# --- THuman ---------------------------------------------------------------------------------------------------

def thuman_file_rotation(uid: str | int) -> np.ndarray:
    """Rotation from a THuman file frame to the Blender (z-up) world: y-up files (uid < 0526) get the OBJ
    importer's +90 deg about x; z-up files (0526+) are used as they are."""
    return Y_UP_TO_Z_UP if int(uid) < THUMAN_Z_UP_FROM_UID else np.eye(3)


def y_up_to_thuman_file(v: np.ndarray, uid: str | int) -> np.ndarray:
    """SMPL-X / 2.0-convention y-up coordinates -> the uid's file frame (0526+: z-up, v[:, [2, 0, 1]])."""
    v = np.asarray(v, np.float64)
    return v[:, [2, 0, 1]] if int(uid) >= THUMAN_Z_UP_FROM_UID else v


def thuman_normalization(smplx_vertices_file: np.ndarray, uid: str | int, fit_scale: float) -> tuple[float, np.ndarray]:
    """(s, centre) of the release's Blender normalisation: s = 0.6 / fit scale, centre = bbox centre of the rotated
    SMPL-X mesh times s. Model-frame points are then `R v_file s - centre`."""
    s = THUMAN_TARGET_SCALE / float(fit_scale)
    rotated = _points(smplx_vertices_file, thuman_file_rotation(uid))
    centre = 0.5 * (rotated.min(0) + rotated.max(0)) * s
    return s, centre


def thuman_file_to_model_points(v_file: np.ndarray, uid: str | int, s: float, centre: np.ndarray) -> np.ndarray:
    return _points(v_file, thuman_file_rotation(uid), s, -np.asarray(centre, np.float64))
