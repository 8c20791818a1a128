"""Data-parallel training of every model family on Ray Train: the per-worker loop, the driver
that launches it, and the checks and preamble the train and tune stages share."""
