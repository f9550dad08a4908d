"""Body models: FLAME, SMPL-X and FaceScape bilinear loaders and forwards (the stand-in lives in model/standin/)."""
