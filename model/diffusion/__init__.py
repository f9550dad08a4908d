"""The Morphable Diffusion network, its noise schedule and the DDIM sampler (framework-free: torch only)."""
