"""The package's Luigi defaults (``luigi_defaults.cfg``), in force from any working directory.

Luigi reads ``luigi.cfg`` only from the working directory, ``/etc/luigi`` and
``$LUIGI_CONFIG_PATH``, so on its own a build started elsewhere would exit 0 after a failure
and run one archive reader at a time. :func:`apply_defaults` puts the package's file *first* in
Luigi's list of config files, so every file Luigi finds still overrides it.
"""
from __future__ import annotations

from pathlib import Path

DEFAULTS_FILE = Path(__file__).with_name("luigi_defaults.cfg")


def apply_defaults() -> None:
    """Read the package defaults under any luigi.cfg (idempotent), and hand ``[hierarchy]
    nltk_data`` to :mod:`hierarchy` as ``$IMAGENET21KP_NLTK_DATA`` (an environment variable set
    before the run wins). Only Luigi's default ``.cfg`` parser is extended; with
    ``LUIGI_CONFIG_PARSER=toml`` set the values yourself."""
    import os

    from luigi.configuration import LuigiConfigParser, get_config

    from hierarchy.wordnet import ENV_VAR
    from pipeline.luigi_private import config_paths

    paths = config_paths()
    if str(DEFAULTS_FILE) not in paths:
        paths.insert(0, str(DEFAULTS_FILE))
        LuigiConfigParser.reload()
    nltk_data = get_config().get("hierarchy", "nltk_data", "")
    if nltk_data and not os.environ.get(ENV_VAR):
        os.environ[ENV_VAR] = nltk_data
