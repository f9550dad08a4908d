"""Cameras, ray casting and shading (open3d on CPU; pytorch3d can be an optional GPU backend later)."""
