"""Model families as plug-ins of one training loop.

A family is one module here with a ``Method`` (its networks, optimisers and training step on one
rank) and a ``GenerativeModel`` (a trained network that samples: what evaluation, grids, MLflow and
the CLI use), both on the interfaces of ``pipeline.methods.base``, and one line in
``pipeline.registry.FAMILIES``; ``model.family`` in params.yaml selects it.
"""
