"""What the deep quantisation heads share (DPQ, DQN, DTQ): an MLP head gives an embedding z, M
learned codebooks of 256 codewords quantise it, ``encode`` stores one byte (a codeword index) per
codebook — n_bits = 8M, the storage of an n_bits hash code — and ranking uses the asymmetric
distance between the float query embedding and the database items' reconstructions
(``code_kind = "pq"``: the Hamming distance between such codes means nothing).

Two layouts:

* **product** (``additive = False``; DPQ, DQN): z is cut into M sub-vectors of ``SUB_DIM`` dims and
  codebook m (256, SUB_DIM) quantises sub-vector m; the code is the nearest codeword per sub-space and
  the distance ``Σ_m ‖z_m − C_m[b_m]‖²`` is read from a (M, 256) table per query.
* **additive** (``additive = True``; DTQ): every codebook (256, D) spans the whole embedding and an item
  is the *sum* ``Σ_m C_m[b_m]``; codes come from greedy residual assignment refined by ``icm_passes``
  passes of iterated conditional modes, and the exact distance
  ``‖q‖² − 2 Σ_m ⟨q, C_m[b_m]⟩ + ‖Σ_m C_m[b_m]‖²`` is again a table lookup plus one stored norm per item.
"""
from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError
from deephash.hashers._head import ClassHeadHasher
from deephash.losses.dpq_loss import subspace_distances

N_CODEWORDS = 256
SUB_DIM = 8
_ROWS = 4096


def additive_assign(z, codebooks, icm_passes: int = 2):
    """Codes ``(n, M)`` (long) for the additive layout: greedy on the residual, then ICM passes that
    re-pick each codebook's word given the others (the squared error never increases)."""
    import torch

    M, k, D = codebooks.shape
    idx = torch.zeros(len(z), M, dtype=torch.long, device=z.device)
    recon = torch.zeros_like(z)
    ar = torch.arange(len(z), device=z.device)
    for m in range(M):
        r = z - recon
        idx[:, m] = ((codebooks[m][None] - r[:, None]) ** 2).sum(-1).argmin(1)
        recon = recon + codebooks[m][idx[:, m]]
    for _ in range(icm_passes):
        for m in range(M):
            r = z - recon + codebooks[m][idx[:, m]]
            new = ((codebooks[m][None] - r[:, None]) ** 2).sum(-1).argmin(1)
            recon = recon - codebooks[m][idx[:, m]] + codebooks[m][new]
            idx[ar, m] = new
    return idx


def reconstruct(codebooks, idx, additive: bool):
    """Reconstructions ``(n, D)`` of codes ``idx`` (n, M): sum of codewords (additive) or their concatenation."""
    import torch

    M = codebooks.shape[0]
    words = codebooks[torch.arange(M, device=idx.device)[None, :], idx]  # (n, M, d)
    return words.sum(1) if additive else words.reshape(len(idx), -1)


def _net(head, n_books: int, word_dim: int, extra=None, extra_name: str = "extra"):
    import torch
    from torch import nn

    class QuantNet(nn.Module):
        """``forward`` gives the embedding; ``codebooks`` (M, 256, word_dim); training-only parts under ``extra_name``."""

        def __init__(self) -> None:
            super().__init__()
            self.head = head
            self.codebooks = nn.Parameter(torch.randn(n_books, N_CODEWORDS, word_dim) * 0.1)
            if extra is not None:
                setattr(self, extra_name, extra)

        def forward(self, x):
            return self.head(x)

    return QuantNet()


class QuantHeadHasher(ClassHeadHasher):
    """Base of the deep quantisers: subclasses set ``additive`` and ``embed_dim`` and write the loss."""

    family = "quantization"
    code_kind = "pq"  # M bytes of codeword indices, ranked by asymmetric distance — not Hamming codes
    additive = False
    #: attribute of the network that holds :meth:`extra_module` (part of the saved state's keys)
    extra_name = "extra"
    icm_passes = 2

    @property
    def n_sub(self) -> int:
        return self.n_bits // 8

    @property
    def embed_dim(self) -> int:
        return self.n_sub * SUB_DIM

    @property
    def word_dim(self) -> int:
        return self.embed_dim if self.additive else SUB_DIM

    def _validate(self):
        super()._validate()
        if self.n_bits % 8:
            raise ConfigError(f"{self.name} stores one byte per codebook: n_bits must be a multiple of 8; got {self.n_bits}")

    def extra_module(self):
        """Training-only parts of the network (e.g. a classifier), or None."""
        return None

    def embed(self, net, x):
        """The embedding that is quantised (default: the head's output)."""
        return net(x)

    def forward_activations(self, net, x):
        return self.embed(net, x)

    def build_network(self, in_dim):
        return _net(self.head(in_dim, self.embed_dim), self.n_sub, self.word_dim, self.extra_module(),
                    self.extra_name)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return self.run_network(X, self.forward_activations, self.embed_dim)

    def prepare(self, X, y, rng):
        import torch

        super().prepare(X, y, rng)
        # codewords start at (sub-vectors of, or M-th parts of) random training embeddings
        with torch.no_grad():
            self.net_.eval()
            idx = rng.choice(len(self.X_train_), size=min(len(self.X_train_), N_CODEWORDS), replace=False)
            z = self.embed(self.net_, self.X_train_[idx])
            cb = self.net_.codebooks.data
            for m in range(self.n_sub):
                rows = torch.from_numpy(rng.choice(len(idx), size=N_CODEWORDS, replace=len(idx) < N_CODEWORDS))
                word = z[rows] / self.n_sub if self.additive else z.reshape(len(idx), self.n_sub, SUB_DIM)[rows, m]
                cb[m] = word + 0.01 * torch.randn(N_CODEWORDS, self.word_dim)

    # ---------------------------------------------------------------- codes and distances
    def assign(self, z, codebooks):
        """Codes ``(n, M)`` (long) of embeddings ``z`` under ``codebooks``."""
        if self.additive:
            return additive_assign(z, codebooks, self.icm_passes)
        return subspace_distances(z, codebooks).argmin(-1)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """``uint8 (n, M)``: one codeword index per codebook (not Hamming bits)."""
        return self._codes_of(self.transform(X))

    def _codebooks(self):
        return self.net_.codebooks.detach().float().cpu()

    def _codes_of(self, z: np.ndarray) -> np.ndarray:
        import torch

        z = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
        cb = self._codebooks()
        with torch.no_grad():
            out = [self.assign(z[s : s + _ROWS], cb).numpy().astype(np.uint8) for s in range(0, len(z), _ROWS)]
        return np.concatenate(out) if out else np.zeros((0, self.n_sub), np.uint8)

    def _adc(self, zq: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
        import torch

        z = torch.from_numpy(np.ascontiguousarray(zq, dtype=np.float32))
        cb = self._codebooks()
        with torch.no_grad():
            if self.additive:  # ‖q‖² − 2 Σ_m ⟨q, C_m[b_m]⟩ + ‖Σ_m C_m[b_m]‖²
                table = -2 * torch.einsum("nd,mkd->nmk", z, cb).numpy()
                norms = reconstruct(cb, torch.from_numpy(db_codes.astype(np.int64)), True).pow(2).sum(1).numpy()
                dist = (z * z).sum(1).numpy()[:, None] + norms[None, :]
            else:
                table = subspace_distances(z, cb).numpy()  # (nq, M, 256)
                dist = np.zeros((len(z), len(db_codes)), np.float32)
        dist = dist.astype(np.float32)
        for m in range(self.n_sub):
            dist += table[:, m, :][:, db_codes[:, m]]
        return dist

    def validation_distances(self, Xv, Xdb):
        """End to end, the training inputs are images: their embeddings through the whole network,
        then the same asymmetric distances as :meth:`query_distances` (not Hamming)."""
        e2e = getattr(self, "e2e_", None)
        if e2e is None:
            return super().validation_distances(Xv, Xdb)
        return self._adc(e2e.activations(self, Xv), self._codes_of(e2e.activations(self, Xdb)))

    def query_distances(self, X_query: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
        """Asymmetric distances ``float32 (nq, ndb)`` from the float query embeddings to the codes' reconstructions."""
        db_codes = np.asarray(db_codes)
        if db_codes.dtype != np.uint8 or db_codes.ndim != 2 or db_codes.shape[1] != self.n_sub:
            raise ConfigError(f"{self.name} database codes must be uint8 (n, {self.n_sub}); got {db_codes.dtype} {db_codes.shape}")
        return self._adc(self.transform(X_query), db_codes)
