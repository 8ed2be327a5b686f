"""The one training loop: seeding, device choice, logging, validation-based early stopping and
resumable checkpoints. A method contributes its network and its loss: anything with the hooks of
:class:`Trainable` trains here (every :class:`~deephash.hashers.deep.DeepHasher` has them); the
Trainer imports no method, and what feeds the batches (a feature bank head-only, an image bank end
to end) is the method's ``sample_batch``."""
from __future__ import annotations

import copy
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from deephash.devices import pick_device

from deephash.errors import ConfigError
from deephash.train.sampling import stratified_holdout
from deephash.utils import atomic_path, seed_everything



class Trainable(Protocol):
    """What the Trainer needs of a method (the hooks a DeepHasher implements)."""

    name: str
    net_: Any
    device_: Any

    def prepare(self, X: np.ndarray, y: np.ndarray | None, rng: np.random.Generator) -> None: ...
    def param_groups(self, net: Any, lr: float) -> list[dict[str, Any]]: ...
    def validation_distances(self, Xv: np.ndarray, Xdb: np.ndarray) -> np.ndarray: ...
    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, Any]: ...
    def compute_loss(self, net: Any, batch: dict[str, Any]) -> Any: ...
    def extra_parameters(self) -> Iterable: ...
    def after_step(self, net: Any, it: int) -> None: ...
    def extra_state(self) -> dict[str, Any]: ...
    def load_extra_state(self, state: dict[str, Any]) -> None: ...
    def sampler_rng_restore(self, rng: np.random.Generator) -> None: ...

log = logging.getLogger("deephash.train")


@dataclass
class TrainerConfig:
    n_iters: int = 2000
    lr: float = 1e-4
    batch_size: int = 32
    weight_decay: float = 0.0
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    val_fraction: float = 0.1
    eval_every: int = 250
    #: stop after this many validations in a row that gain less than ``min_delta`` mAP over the best
    patience: int = 4
    min_delta: float = 1e-3
    val_topk: int = 1000
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    log_every: int = 100
    checkpoint_path: str | None = None
    #: a progress bar on stderr (iteration, loss, validation mAP, time left)
    progress: bool = False
    #: learning-rate schedule: "constant", or "cosine" decay to 0 after ``warmup_iters`` linear warm-up
    schedule: str = "constant"
    warmup_iters: int = 0

    def __post_init__(self) -> None:
        if self.n_iters < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ConfigError(f"n_iters, batch_size and eval_every must be >= 1; got {self.n_iters}, {self.batch_size}, {self.eval_every}")
        if self.optimizer not in ("adam", "sgd", "adamw"):
            raise ConfigError(f"optimizer must be adam, adamw or sgd; got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine'; got {self.schedule!r}")
        if self.patience < 1 or self.min_delta < 0:
            raise ConfigError(f"patience must be >= 1 and min_delta >= 0; got {self.patience}, {self.min_delta}")


def _progress_bar(c: TrainerConfig, name: str, start: int, validated: bool):
    """A tqdm bar over iterations on stderr, or None when progress is off."""
    if not c.progress:
        return None
    from tqdm import tqdm

    what = f"every {c.eval_every} it, stops after {c.patience} without gain" if validated else "no validation"
    return tqdm(total=c.n_iters, initial=start, desc=f"train {name} ({what})", unit="it", file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0)


def _postfix(history: dict[str, Any], best: float | None = None) -> dict[str, str]:
    out = {"loss": f"{history['loss'][-1]['loss']:.4f}"} if history["loss"] else {}
    if history["val"]:
        out["val_mAP"] = f"{history['val'][-1]['map']:.4f}"
    if best is not None and best >= 0:
        out["best"] = f"{best:.4f}"
    return out


class Trainer:
    """``Trainer(TrainerConfig(...)).fit(method, X, y)`` trains ``method.net_`` in place and returns the history."""

    def __init__(self, config: TrainerConfig | None = None) -> None:
        self.config = config or TrainerConfig()

    def _make_scheduler(self, opt):
        import math

        import torch

        c = self.config
        if c.schedule == "constant" and c.warmup_iters <= 0:
            return None

        def factor(it: int) -> float:
            if it < c.warmup_iters:
                return (it + 1) / c.warmup_iters
            if c.schedule == "constant":
                return 1.0
            t = (it - c.warmup_iters) / max(1, c.n_iters - c.warmup_iters)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def _make_optimizer(self, params):
        import torch

        c = self.config
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, betas=tuple(c.betas), weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, betas=tuple(c.betas), weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def _validate(self, method: Trainable, Xv, yv, Xdb, ydb) -> float:
        from deephash.eval.metrics import mean_average_precision, relevance_matrix

        # the method's own ranking (Hamming by default, asymmetric for quantisers), head-only or on images
        dist = method.validation_distances(Xv, Xdb)
        return mean_average_precision(dist, relevance_matrix(yv, ydb), self.config.val_topk)

    def fit(self, method: Trainable, X: np.ndarray, y: np.ndarray | None) -> dict[str, Any]:
        import torch

        c = self.config
        seed_everything(c.seed)
        rng = np.random.default_rng(c.seed)
        device = pick_device(c.device)
        method.device_ = device
        if device.type == "cpu":
            # small head-only batches: extra intra-op threads only add barrier waits, and collapse
            # when another process shares the cores (measured 7x slower with 2 threads under load)
            torch.set_num_threads(max(1, int(os.environ.get("DEEPHASH_THREADS", "1") or 1)))
        # validation split carved from the training data, never from the query set
        if y is not None and c.val_fraction > 0 and len(X) >= 20:
            tr, va = stratified_holdout(y, c.val_fraction, rng)
        else:
            tr, va = np.arange(len(X)), np.zeros(0, np.int64)
        Xt, yt = X[tr], (y[tr] if y is not None else None)
        method.prepare(Xt, yt, rng)
        net = method.net_.to(device)
        if hasattr(method, "param_groups"):
            params = method.param_groups(net, c.lr)
        else:
            params = [p for p in net.parameters() if p.requires_grad] + list(method.extra_parameters())
        opt = self._make_optimizer(params)
        sched = self._make_scheduler(opt)
        history: dict[str, Any] = {"config": asdict(c), "device": str(device), "val": [], "loss": [], "resumed_from": 0}
        best_score, best_state, bad, start = -1.0, None, 0, 0
        ckpt = Path(c.checkpoint_path) if c.checkpoint_path else None
        if ckpt and ckpt.is_file():
            blob = torch.load(ckpt, map_location="cpu", weights_only=False)
            net.load_state_dict(blob["net"])
            opt.load_state_dict(blob["opt"])
            if sched is not None and blob.get("sched"):
                sched.load_state_dict(blob["sched"])
            method.load_extra_state(blob.get("extra", {}))
            best_score, best_state, bad, start = blob["best_score"], blob["best_state"], blob["bad"], blob["iter"]
            history = blob["history"]
            history["resumed_from"] = start
            history["train_s_before"] = history["val"][-1]["train_s"] if history["val"] else 0.0
            rng.bit_generator.state = blob["rng"]
            method.sampler_rng_restore(rng)
            log.info("resumed training from %s at iteration %d", ckpt, start)
        # validation database: a random sample of the training rows (a separate generator, so the
        # method's sampling stream is unchanged); the first rows could all be one class
        db = np.sort(np.random.default_rng(c.seed + 1).permutation(len(Xt))[:5000])
        Xdb, ydb = (Xt[db], yt[db]) if yt is not None else (None, None)
        use_amp = c.amp and device.type == "cuda"
        bar = _progress_bar(c, method.name, start, len(va) > 0)
        t0 = time.perf_counter()
        t_val = 0.0  # seconds spent validating, kept apart from training time
        it = start
        for it in range(start, c.n_iters):
            net.train()
            batch = method.sample_batch(rng, c.batch_size)
            batch = {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, logs = method.compute_loss(net, batch)
            if not torch.isfinite(loss):
                raise ConfigError(f"{method.name}: loss became {float(loss)} at iteration {it}; lower the learning rate (lr={c.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            method.after_step(net, it)
            if (it + 1) % c.log_every == 0 or it == start:
                history["loss"].append({"iter": it + 1, "loss": float(loss.detach()), **logs})
                if bar is not None:
                    bar.set_postfix(_postfix(history), refresh=False)
            if bar is not None:
                bar.update(1)
            last = it + 1 == c.n_iters
            if len(va) and ((it + 1) % c.eval_every == 0 or last):
                net.eval()
                tv = time.perf_counter()
                score = self._validate(method, X[va], y[va], Xdb, ydb)
                t_val += time.perf_counter() - tv
                history["val"].append({"iter": it + 1, "map": score,
                                       "train_s": time.perf_counter() - t0 - t_val + history.get("train_s_before", 0.0)})
                # the best state is kept on any gain; patience runs out on gains below min_delta
                gained = score - best_score
                if gained > 1e-6:
                    best_score, best_state = score, copy.deepcopy({k: v.detach().cpu() for k, v in net.state_dict().items()})
                bad = 0 if gained >= c.min_delta else bad + 1
                if bar is not None:
                    bar.set_postfix(_postfix(history, best_score), refresh=True)
                if ckpt:
                    with atomic_path(ckpt) as tmp:
                        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "best_score": best_score,
                                    "best_state": best_state, "bad": bad, "iter": it + 1, "history": history,
                                    "rng": rng.bit_generator.state, "extra": method.extra_state(),
                                    "sched": sched.state_dict() if sched is not None else None}, tmp)
                if bad >= c.patience:
                    history["early_stopped_at"] = it + 1
                    break
        if bar is not None:
            if "early_stopped_at" in history:
                bar.write(f"[{method.name}] stopped early at iteration {history['early_stopped_at']}: validation mAP "
                          f"gained less than {c.min_delta} in {c.patience} checks (best {best_score:.4f})", file=sys.stderr)
            bar.close()
        if best_state is not None:
            net.load_state_dict(best_state)
            history["best_val_map"] = best_score
        net.eval()
        history["iters"] = it + 1
        history["seconds"] = time.perf_counter() - t0
        history["validation_s"] = t_val
        if ckpt and ckpt.is_file():
            os.unlink(ckpt)  # training finished: the resume file is no longer needed
        return history
