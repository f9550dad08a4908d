"""Geometry shared by stages: mesh voxelisation for the sparse conditioning."""
