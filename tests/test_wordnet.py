"""WordNet 3.0 lookup through the project's single setting, and the error when it is missing."""
from __future__ import annotations

import os
import subprocess
import sys

from tools.install_wordnet import lexnames_text
from hierarchy.wordnet import ENV_VAR, is_known_wnid, lemma_name, synset_of, wnid_of


def test_wnids_resolve_to_their_synsets():
    assert lemma_name("n01440764") == "tench"
    assert lemma_name("n02084071") == "dog"
    assert wnid_of(synset_of("n02084071")) == "n02084071"
    assert "domestic_animal.n.01" in {s.name() for s in synset_of("n02084071").hypernyms()}


def test_unknown_and_malformed_wnids():
    assert not is_known_wnid("n99999999")
    assert not is_known_wnid("../etc/passwd")
    assert is_known_wnid("n00015388")  # animal


def test_lexnames_file_has_wordnet_45_lines():
    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"


def test_missing_wordnet_is_one_clear_error_naming_the_fix(tmp_path):
    env = dict(os.environ, **{ENV_VAR: str(tmp_path / "nowhere")})
    proc = subprocess.run([sys.executable, "-c", "from hierarchy.wordnet import lemma_name; lemma_name('n01440764')"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("hierarchy.wordnet.WordNetMissing")
    assert "make env" in last and ENV_VAR in last


def test_setting_points_at_an_installed_copy(tmp_path):
    from tools.install_wordnet import install

    assert install(tmp_path / "nltk_data") in ("Debian wordnet-base", "nltk.download")
    env = dict(os.environ, **{ENV_VAR: str(tmp_path / "nltk_data")})
    out = subprocess.run([sys.executable, "-c", "from hierarchy.wordnet import lemma_name; print(lemma_name('n02084071'))"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "dog"


def test_version_reports_the_active_pil_build():
    out = subprocess.run([sys.executable, "-m", "pipeline", "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert "PIL: pillow" in out
