"""pipeline.luigi_config: the package's Luigi defaults apply in any folder; a luigi.cfg wins."""
from __future__ import annotations

import subprocess
import sys

from test_luigi_command import clean_env


def test_the_package_defaults_apply_in_any_folder_and_luigi_cfg_wins(tmp_path):
    code = ("import luigi, pipeline, luigi.configuration as c; g = c.get_config(); "
            "print(g.getint('retcode', 'task_failed'), g.getint('resources', 'archive_io'), g.get('core', 'log_level'))")
    run = lambda env: subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,  # noqa: E731
                                     capture_output=True, text=True, timeout=120).stdout.split()
    assert run(clean_env()) == ["30", "32", "WARNING"]
    (tmp_path / "luigi.cfg").write_text("[resources]\narchive_io = 3\n")
    assert run(clean_env()) == ["30", "3", "WARNING"]
