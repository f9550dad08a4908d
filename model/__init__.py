"""The science, framework-free: body models, tracking, rendering, diffusion, metrics. Never imports Dagster."""
