"""Hyperparameter search: Ray Tune trials that are short Ray Train runs, ranked on milestone FID."""
