"""DeepHasher: the base of every torch-trained method. A method supplies its network
(``build_network``) and its loss (``compute_loss``); the shared Trainer does the rest."""
from __future__ import annotations

import inspect
from typing import Any, Iterable

import numpy as np

from deephash.errors import NotFittedError
from deephash.hashers.base import Hasher
from deephash.codes import pack_bits
from deephash.train.trainer import Trainer, TrainerConfig

#: constructor arguments that configure the Trainer rather than the method
TRAINER_PARAMS = ("n_iters", "lr", "batch_size", "weight_decay", "optimizer", "val_fraction", "eval_every", "patience",
                  "device")


class DeepHasher(Hasher):
    """Torch-trained hasher over feature vectors (head-only) — subclasses implement the hooks."""

    threshold = 0.5
    supervised = True
    #: default training schedule; subclasses override entries
    default_train: dict[str, Any] = {}

    def __init__(self, n_bits: int = 64, *, seed: int = 0, n_iters: int | None = None, lr: float | None = None,
                 batch_size: int | None = None, weight_decay: float | None = None, optimizer: str | None = None,
                 val_fraction: float = 0.1, eval_every: int | None = None, patience: int = 4, device: str = "auto") -> None:
        super().__init__(n_bits, seed=seed)
        self.n_iters, self.lr, self.batch_size = n_iters, lr, batch_size
        self.weight_decay, self.optimizer = weight_decay, optimizer
        self.val_fraction, self.eval_every, self.patience, self.device = val_fraction, eval_every, patience, device

    @classmethod
    def _param_names(cls) -> list[str]:
        names: list[str] = []
        for klass in cls.__mro__:
            if "__init__" not in klass.__dict__ or klass in (Hasher, object):
                continue
            for p, prm in inspect.signature(klass.__init__).parameters.items():
                if p not in ("self", "n_bits") and prm.kind not in (prm.VAR_KEYWORD, prm.VAR_POSITIONAL) and p not in names:
                    names.append(p)
        return names

    def trainer_config(self, **overrides: Any) -> TrainerConfig:
        cfg = dict(self.default_train)
        for k in TRAINER_PARAMS:
            v = getattr(self, k, None)
            if v is not None:
                cfg[k] = v
        cfg.update(seed=self.seed, **overrides)
        return TrainerConfig(**cfg)

    # ---------------------------------------------------------------- hooks
    def build_network(self, in_dim: int):
        """Return an ``nn.Module`` mapping features (n, in_dim) to activations (n, n_bits)."""
        raise NotImplementedError

    def prepare(self, X: np.ndarray, y: np.ndarray | None, rng: np.random.Generator) -> None:
        """Called by the Trainer with the training rows (validation removed): keep data, build the net.

        Head-only: ``X`` are feature vectors and ``net_`` is the head. End-to-end (``e2e_`` set by
        :func:`deephash.train.finetune.fine_tune`): ``X`` are uint8 images, ``X_train_[idx]`` yields
        augmented image batches on the device and ``net_`` is trunk + head, so every method's
        ``sample_batch`` and ``compute_loss`` work unchanged in both regimes."""
        import torch

        self.y_train_ = y
        e2e = getattr(self, "e2e_", None)
        if e2e is None:
            self.X_train_ = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
            self.net_ = self.build_network(X.shape[1])
        else:
            self.X_train_ = e2e.bank(X, train=True)
            self.net_ = e2e.network(self.build_network(e2e.trunk.out_dim))  # trunk + head

    # ---------------------------------------------------------------- end-to-end hooks
    def build_trunk(self, base):
        """The image part of the end-to-end network: NCHW float -> descriptor ``(n, out_dim)``.

        ``base`` is the backbone's torch module (pooled features, ``forward_maps`` for conv maps).
        Default: the pooled backbone features, the input the head sees in the head-only regime.
        Methods whose distinctive parts act on conv maps or images override this."""
        return base

    def attach_trunk(self, base) -> None:
        """Rebuild the fine-tuned trunk from a checkpoint: architecture from ``base``, weights saved here."""
        import torch

        state = getattr(self, "trunk_state_", None)
        if state is None:
            raise NotFittedError(f"this {self.name} checkpoint holds no fine-tuned backbone weights")
        trunk = self.build_trunk(base)
        trunk.load_state_dict({k: (v.float() if torch.is_floating_point(v) else v) for k, v in state.items()})
        self.trunk_ = trunk.eval()

    def param_groups(self, net, lr: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups; end-to-end, the pretrained trunk learns at ``lr * backbone_lr_mult``."""
        extra = list(self.extra_parameters())
        if getattr(net, "is_end_to_end", False):
            mult = float(getattr(self.e2e_, "backbone_lr_mult", 1.0))
            trunk = [p for p in net.trunk.parameters() if p.requires_grad]
            head = [p for p in net.head.parameters() if p.requires_grad] + extra
            return [{"params": trunk, "lr": lr * mult}, {"params": head, "lr": lr}]
        return [{"params": [p for p in net.parameters() if p.requires_grad] + extra, "lr": lr}]

    def encode_training_input(self, X: np.ndarray) -> np.ndarray:
        """Packed codes of training-regime inputs (features head-only, images end-to-end): validation."""
        e2e = getattr(self, "e2e_", None)
        if e2e is None:
            return self.encode(X)
        return pack_bits(e2e.activations(self, X) >= self.threshold)

    def validation_distances(self, Xv: np.ndarray, Xdb: np.ndarray) -> np.ndarray:
        """Distances the Trainer ranks its validation split by (queries ``Xv`` to database ``Xdb``,
        both training-regime inputs): the method's own ranking head-only; end to end, Hamming
        between the codes of the images. Quantisers override this (their ranking is not Hamming)."""
        from deephash.codes import hamming_matrix

        if getattr(self, "e2e_", None) is None:
            return self.query_distances(Xv, self.encode(Xdb))
        return hamming_matrix(self.encode_training_input(Xv), self.encode_training_input(Xdb))

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, Any]:
        """Default: a uniform random mini-batch ``{"x", "y", "idx"}``."""
        import torch

        idx = rng.choice(len(self.X_train_), size=min(batch_size, len(self.X_train_)), replace=False)
        out = {"x": self.X_train_[idx], "idx": torch.from_numpy(idx)}
        if self.y_train_ is not None:
            out["y"] = torch.from_numpy(np.asarray(self.y_train_)[idx])
        return out

    def compute_loss(self, net, batch: dict[str, Any]):
        raise NotImplementedError

    def extra_parameters(self) -> Iterable:
        """Trainable tensors outside the network (e.g. hash centres)."""
        return []

    def after_step(self, net, it: int) -> None:
        pass

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def sampler_rng_restore(self, rng: np.random.Generator) -> None:
        pass

    # ---------------------------------------------------------------- sklearn API
    def fit(self, X: np.ndarray, y: np.ndarray | None = None, *, checkpoint_path: str | None = None,
            progress: bool = False) -> "DeepHasher":
        self._validate()
        X = self._check_X(X, fitting=True)
        if self.supervised:
            y = self._check_y(X, y)
        self.history_ = Trainer(self.trainer_config(checkpoint_path=checkpoint_path, progress=progress)).fit(self, X, y)
        self.net_.cpu()
        self._drop_training_data()
        return self

    def fit_end_to_end(self, images: np.ndarray, y: np.ndarray, source: Any, in_dim: int,
                       config: TrainerConfig) -> "DeepHasher":
        """Train on images instead of features: ``source`` (an end-to-end batch source, e.g.
        :class:`deephash.train.finetune.EndToEnd`: a trainable trunk and its augmentation) feeds the
        same Trainer, whose network is then ``head(trunk(images))``. Used by ``deephash finetune``;
        the caller keeps the trained ``net_`` (trunk and head) and saves it."""
        self._validate()
        self.e2e_, self.in_dim_ = source, int(in_dim)
        try:
            self.history_ = Trainer(config).fit(self, images, y)
        finally:
            self._drop_training_data()
        return self

    def _drop_training_data(self) -> None:
        for a in ("X_train_", "y_train_", "e2e_"):
            if hasattr(self, a):
                delattr(self, a)

    def forward_activations(self, net, x):
        """Activations used for the code (override when the network returns a tuple)."""
        return net(x)

    def run_network(self, X: np.ndarray, head, width: int) -> np.ndarray:
        """``head(net, batch)`` over checked feature rows in batches of 4,096, as float32 ``(n, width)``."""
        import torch

        X = self._check_X(X)
        if not hasattr(self, "net_"):
            from deephash.errors import NotFittedError

            raise NotFittedError(f"this {self.name} hasher is not fitted yet")
        net = self.net_
        dev = next(net.parameters()).device
        net.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(X), 4096):
                out.append(head(net, torch.from_numpy(X[s : s + 4096]).to(dev)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, width), np.float32)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return self.run_network(X, self.forward_activations, self.n_bits)

    def state_dict(self) -> dict[str, Any]:
        st = super().state_dict()
        fine_tuned = getattr(self, "trunk_", None) is not None
        # fine-tuned checkpoints store every float tensor in float16 (fine_tune rounds the weights so
        # before its final evaluation, so the saved model is exactly the one evaluated)
        st.update({f"net.{k}": (v.detach().cpu().half() if fine_tuned and v.is_floating_point() else v.detach().cpu())
                   for k, v in self.net_.state_dict().items()})
        st.update({f"extra.{k}": v for k, v in self.extra_state().items()})
        if fine_tuned:
            import torch

            st.update({f"trunk.{k}": (v.detach().cpu().half() if torch.is_floating_point(v) else v.detach().cpu())
                       for k, v in self.trunk_.state_dict().items()})
        return st

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        super().load_state_dict(state)
        # extra state first: some networks' shapes depend on it (e.g. the number of classes)
        self.load_extra_state({k[6:]: v for k, v in state.items() if k.startswith("extra.")})
        self.net_ = self.build_network(self.in_dim_)
        net_state = {k[4:]: (v if isinstance(v, torch.Tensor) else torch.as_tensor(v)) for k, v in state.items() if k.startswith("net.")}
        net_state = {k: (v.float() if v.is_floating_point() else v) for k, v in net_state.items()}
        self.net_.load_state_dict(net_state)
        self.net_.eval()
        trunk = {k[6:]: v for k, v in state.items() if k.startswith("trunk.")}
        self.trunk_state_ = trunk or None
