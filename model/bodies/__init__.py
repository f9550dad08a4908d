"""Body models: FLAME, SMPL-X and FaceScape bilinear loaders, and the procedural stand-ins."""
