"""Image metrics of the paper's evaluation (spec §6.4) plus the demo's masked PSNR and silhouette IoU."""
