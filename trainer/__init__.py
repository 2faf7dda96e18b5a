"""Streaming semantic-softmax training of timm models on ImageNet-21K-P (``python -m trainer``).

Modules: ``config`` (settings = CLI flags), ``cli``, ``data`` (deterministic WebDataset
streaming, the rank's plan, the dataset's tree), ``transforms`` (decode + augmentation),
``precision`` (autocast, input format), ``levels`` (the tree as tensors), ``losses`` (and the
scheme's criterion), ``initial_weights`` (a timm model with its initial weights),
``head_order`` (the classifier's rows in level or class order), ``trained_model`` (loading a
trained model: predict, evaluate, the KD teacher), ``model`` (the run's model, teacher and
optimizer), ``schedule`` (one-cycle lr), ``train`` (the loop), ``evaluate`` (validation),
``metrics`` (training sums, validation metrics), ``run_dir`` (claiming the run directory),
``checkpoint`` (save/resume), ``export`` (the run dir as a timm model folder), ``report``
(metrics.jsonl, model card, printed lines), ``steplog`` (steps.jsonl, TensorBoard), ``plots``,
``distributed``, ``predict``. The dataset's file names come from ``pipeline.dataset_format``.
See trainer/README.md.
"""
