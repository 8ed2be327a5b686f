"""A training set too small for the method and the code length is warned about: warnings.warn in
the Python API, one line on stderr from the CLI. The rule per method family lives in one table."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from deephash.hashers import SmallTrainingSetWarning, create_hasher, list_hashers, minimum_training_images
from deephash.hashers._training_size import FAMILY_OF, RULES, size_family


def _X(n, dim=48, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_itq_at_32_bits_on_20_images_warns():
    with pytest.warns(SmallTrainingSetWarning, match=r"itq at 32 bits is being trained on 20 images; it needs at least 128"):
        create_hasher("itq", 32).fit(_X(20))


def test_enough_images_do_not_warn_and_lsh_never_does():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallTrainingSetWarning)
        create_hasher("itq", 8).fit(_X(40))  # 4 per bit
        create_hasher("lsh", 64).fit(_X(3))  # data-independent


def test_every_registered_method_has_a_rule_and_its_minimum_grows_with_the_bits():
    for name in list_hashers():
        fam = size_family(name)
        assert fam in RULES
        assert minimum_training_images(name, 64) >= minimum_training_images(name, 16)
    assert set(FAMILY_OF.values()) <= set(RULES)
    assert minimum_training_images("itq", 32) == 128 and minimum_training_images("mhcln", 64) == 640
    assert minimum_training_images("pq", 64) == 39 * 256 and minimum_training_images("lsh", 1024) == 0


def test_the_cli_prints_the_warning_as_one_line(tmp_path, tmp_cache):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / f"{i}.png")
    # a real process: pytest would capture the warning itself
    proc = subprocess.run([sys.executable, "-m", "deephash.cli.main", "train", str(root), "--method", "itq", "--bits",
                           "32", "--image-size", "32", "--out", str(tmp_path / "itq.pt")],
                          capture_output=True, text=True, env={**os.environ, "DEEPHASH_CACHE": str(tmp_cache)})
    assert proc.returncode == 0, proc.stderr
    warn = [ln for ln in proc.stderr.splitlines() if "itq at 32 bits" in ln]
    assert len(warn) == 1 and warn[0].startswith("warning: itq at 32 bits is being trained on 20 images")
    assert "UserWarning" not in proc.stderr and "warnings.warn" not in proc.stderr
    assert "trained itq (32 bits) on 20 images" in proc.stdout
