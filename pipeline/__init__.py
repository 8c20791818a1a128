"""diffusion-pipeline: DVC stages, Ray Train/Tune and MLflow around DDPM models."""

__version__ = "0.1.0"
