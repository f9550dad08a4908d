"""Fitting body models to data: multi-view FaceScape FLAME fits, THuman SMPL-X alignment, single-image FLAME fits."""
