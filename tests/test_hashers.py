"""Every registered hasher: trains, saves, loads and encodes identically; codes have the right shape."""
import numpy as np
import pytest

from deephash.errors import ConfigError, NotFittedError, UnknownNameError
from deephash.eval.metrics import mean_average_precision, relevance_matrix
from deephash.hashers import create_hasher, list_hashers, load_hasher
from deephash.index import hamming_matrix, unpack_bits

FAST = {"n_iters": 150, "eval_every": 50}


def make(name, bits=32):
    h = create_hasher(name, bits, seed=1)
    for k, v in FAST.items():
        if hasattr(h, k):
            setattr(h, k, v)
    return h


@pytest.mark.parametrize("name", list_hashers())
def test_train_save_load_encode_identically(name, blobs, tmp_path):
    X, y = blobs
    h = make(name)
    h.fit(X, y) if h.supervised else h.fit(X)
    codes = h.encode(X)
    assert codes.shape == (len(X), 4) and codes.dtype == np.uint8
    bits = unpack_bits(codes)
    assert 0.05 < bits.mean() < 0.95, "codes must not be constant"
    p = h.save(tmp_path / f"{name}.pt", backbone="efficientnet-lite0")
    h2, cfg = load_hasher(p)
    assert cfg.method == name and cfg.n_bits == 32 and cfg.seed == 1 and cfg.backbone == "efficientnet-lite0"
    assert np.array_equal(h2.encode(X), codes)


def test_mhcln_beats_lsh_on_clustered_features(blobs):
    X, y = blobs
    rel = relevance_matrix(y, y)
    scores = {}
    for name in ("lsh", "mhcln"):
        h = create_hasher(name, 32, seed=0, **({"n_iters": 600, "eval_every": 200} if name == "mhcln" else {}))
        h.fit(X, y)
        c = h.encode(X)
        scores[name] = mean_average_precision(hamming_matrix(c, c), rel, 100)
    assert scores["mhcln"] > scores["lsh"] + 0.05, scores


def test_registry_and_param_errors(blobs):
    X, y = blobs
    with pytest.raises(UnknownNameError, match="known hashers: .*mhcln"):
        create_hasher("nope")
    with pytest.raises(NotFittedError):
        create_hasher("itq", 16).encode(X)
    h = create_hasher("itq", 16).fit(X)
    with pytest.raises(ConfigError, match="fitted on 64"):
        h.encode(X[:, :10])
    with pytest.raises(ConfigError, match="multiple of 8"):
        create_hasher("lsh", 12).fit(X)
    with pytest.raises(ConfigError, match="needs labels"):
        create_hasher("mhcln", 16).fit(X)


def test_mhcln_network_is_the_papers():
    import torch

    h = create_hasher("mhcln", 48)
    net = h.build_network(2048)
    shapes = [tuple(m.weight.shape) for m in net if isinstance(m, torch.nn.Linear)]
    assert shapes == [(1024, 2048), (512, 1024), (48, 512)]
    assert isinstance(net[1], torch.nn.LeakyReLU) and net[1].negative_slope == 0.2
    assert isinstance(net[-1], torch.nn.Sigmoid)
    assert h.trainer_config().betas == (0.5, 0.9) and h.trainer_config().batch_size == 30
