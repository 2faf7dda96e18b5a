"""Streaming semantic-softmax training of timm models on ImageNet-21K-P (``python -m trainer``).

Modules: ``config`` (settings = CLI flags), ``cli``, ``data`` (deterministic WebDataset
streaming), ``transforms`` (decode + augmentation), ``levels`` (the tree as tensors),
``losses``, ``metrics``, ``model``, ``schedule`` (one-cycle lr), ``checkpoint``,
``distributed``, ``train`` (the loop), ``predict``, ``plots``. See trainer/README.md.
"""
