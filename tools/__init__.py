"""Tools around the product, not part of it (not installed with the packages): the synthetic
ImageNet-21K archives and processed-download copies the tests and ``make demo`` build
(``python -m tools.demo_archive``, ``python -m tools.demo_release``), and the offline WordNet
installer ``make env`` runs (``python -m tools.install_wordnet``). Run them from the checkout."""
