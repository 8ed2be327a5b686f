"""A real CIFAR-10 evaluation report: frozen CNN features, LSH / PCAH / ITQ codes, float kNN.

    PYTHONPATH=src python scripts/eval_demo.py --out /tmp/eval-demo

Features: EfficientNet-Lite0 (ImageNet weights, frozen, global-average-pooled 1280-d) run
with ONNX Runtime on the 32x32 images upscaled to 224 (``--features lite0``); or, for a
sanity check only, raw pixels downscaled to 16x16 (``--features pixels``) -- the report
says which. No hashing network is trained here: the three methods are the classic
unsupervised baselines fitted on the protocol's training images, so the numbers show the
evaluation machinery, not deephash's deep methods. Features are cached under ``--out`` and
computed in resumable chunks.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from deephash.eval import evaluate_codes, evaluate_features, get_protocol
from deephash.eval.report import write_report
from deephash.index.codes import pack_bits
from deephash.utils import Timer, atomic_path, cache_dir

LITE0_ONNX = "backbones/efficientnet-lite0-50a410c09e.onnx"


def list_images(root: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Image ids ('train/cat/0001.jpg'), class ids, source split names, class names."""
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    ids, labels, names = [], [], []
    for split in ("train", "test"):
        for c, cls in enumerate(classes):
            for f in sorted((root / split / cls).glob("*.jpg")):
                ids.append(f"{split}/{cls}/{f.name}")
                labels.append(c)
                names.append(split)
    return ids, np.array(labels, dtype=np.int64), np.array(names), classes


def _load(root: Path, ids: list[str], size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(ids), size, size, 3), dtype=np.uint8)
    for i, rel in enumerate(ids):
        with Image.open(root / rel) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
    return out


def compute_features(root: Path, ids: list[str], kind: str, cache: Path, chunk: int = 2000, tag: str = "") -> np.ndarray:
    """Features of the given images, cached per chunk so an interrupted run resumes."""
    tag = tag or kind
    final = cache / f"features-{tag}.npy"
    if final.exists():
        return np.load(final)
    parts_dir = cache / f"features-{tag}-parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    runner = None
    if kind == "lite0":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(os.environ.get("DEMO_THREADS", "2"))
        runner = ort.InferenceSession(str(cache_dir() / LITE0_ONNX), so, providers=["CPUExecutionProvider"])
    t0 = time.time()
    parts = []
    for s in range(0, len(ids), chunk):
        p = parts_dir / f"{s:06d}.npy"
        if not p.exists():
            if kind == "pixels":
                feats = _load(root, ids[s : s + chunk], 16).reshape(-1, 16 * 16 * 3).astype(np.float32) / 255.0
            else:
                feats = []
                for b in range(s, min(s + chunk, len(ids)), 64):
                    x = _load(root, ids[b : min(b + 64, s + chunk)], 224).astype(np.float32)
                    x = ((x - 127.0) / 128.0).transpose(0, 3, 1, 2)
                    feats.append(runner.run(None, {"x": np.ascontiguousarray(x)})[0])
                feats = np.concatenate(feats).astype(np.float32)
            with atomic_path(p, suffix=".npy") as tmp:
                np.save(tmp, feats)
            done = min(s + chunk, len(ids))
            print(f"features {kind}: {done}/{len(ids)} ({time.time() - t0:.0f} s)", flush=True)
        parts.append(np.load(p))
    feats = np.concatenate(parts)
    with atomic_path(final, suffix=".npy") as tmp:
        np.save(tmp, feats)
    return feats


# ----------------------------------------------------------------------------- baselines
# Minimal unsupervised baselines, fitted on the protocol's training features. (The library's
# own hashers live in deephash.hashers; these are here so the demo stands alone.)


def fit_lsh(x: np.ndarray, n_bits: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"mean": x.mean(axis=0), "W": rng.standard_normal((x.shape[1], n_bits)).astype(np.float32)}


def fit_pcah(x: np.ndarray, n_bits: int, seed: int) -> dict:
    mean = x.mean(axis=0)
    xc = (x - mean).astype(np.float64)
    vals, vecs = np.linalg.eigh(xc.T @ xc / len(xc))
    return {"mean": mean, "W": vecs[:, np.argsort(vals)[::-1][:n_bits]].astype(np.float32)}


def fit_itq(x: np.ndarray, n_bits: int, seed: int, n_iter: int = 50) -> dict:
    """PCA to n_bits dims, then the rotation R minimising ||B - V R||_F by alternation (Gong & Lazebnik)."""
    pca = fit_pcah(x, n_bits, seed)
    v = ((x - pca["mean"]) @ pca["W"]).astype(np.float64)
    rng = np.random.default_rng(seed)
    R, _ = np.linalg.qr(rng.standard_normal((n_bits, n_bits)))
    for _ in range(n_iter):
        B = np.where(v @ R >= 0, 1.0, -1.0)
        U, _, Wt = np.linalg.svd(v.T @ B)  # max tr(B^T V R) over orthogonal R: R = U W^T
        R = U @ Wt
    return {"mean": pca["mean"], "W": (pca["W"].astype(np.float64) @ R).astype(np.float32)}


def encode(model: dict, x: np.ndarray) -> np.ndarray:
    return pack_bits(((x - model["mean"]) @ model["W"]) >= 0)


METHODS = {"LSH": fit_lsh, "PCAH": fit_pcah, "ITQ": fit_itq}


def model_bytes(model: dict) -> int:
    return int(sum(np.asarray(v, dtype=np.float32).nbytes for v in model.values()))


def time_binary_search(db: np.ndarray, q: np.ndarray, n_bits: int, k: int) -> float:
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexBinaryFlat(n_bits)
    index.add(db)
    with Timer() as t:
        index.search(q, k)
    return t.seconds / len(q)


def time_float_search(db: np.ndarray, q: np.ndarray, k: int) -> float:
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatIP(db.shape[1])
    index.add(np.ascontiguousarray(db, dtype=np.float32))
    with Timer() as t:
        index.search(np.ascontiguousarray(q, dtype=np.float32), k)
    return t.seconds / len(q)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(cache_dir() / "datasets" / "cifar10"))
    ap.add_argument("--out", default="/tmp/eval-demo")
    ap.add_argument("--features", choices=["lite0", "pixels"], default="lite0")
    ap.add_argument("--protocol", default="cifar10-54k")
    ap.add_argument("--bits", default="16,32,64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reduce", default="", help="n_query,n_db[,n_train] for a quick run")
    args = ap.parse_args(argv)

    root, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ids, labels, split_names, classes = list_images(root)
    print(f"{len(ids)} images, {len(classes)} classes", flush=True)
    protocol = get_protocol(args.protocol)
    if args.reduce:
        n = [int(v) for v in args.reduce.split(",")]
        protocol = protocol.reduced(n[0], n[1], seed=args.seed, n_train=n[2] if len(n) > 2 else None)
    split = protocol.split(labels, split_names, seed=args.seed)
    split.save(out / "split.json", ids)
    print(protocol.describe(), split.sizes(), sep="\n", flush=True)
    # features of the images the split uses (all of them for a full protocol), cached per image set
    used = np.unique(np.concatenate([split.query_idx, split.train_idx, split.db_idx]))
    tag = args.features if len(used) == len(ids) else f"{args.features}-{len(used)}-{hashlib.sha1(used.tobytes()).hexdigest()[:10]}"
    with Timer() as t_feat:
        sub = compute_features(root, [ids[i] for i in used], args.features, out, tag=tag)
    feats = np.zeros((len(ids), sub.shape[1]), dtype=np.float32)
    feats[used] = sub
    fq, ft, fd = feats[split.query_idx], feats[split.train_idx], feats[split.db_idx]
    lq, ld = labels[split.query_idx], labels[split.db_idx]
    bits_list = [int(b) for b in args.bits.split(",")]
    k_search = min(1000, len(fd))

    results = []
    for name, fit in METHODS.items():
        for n_bits in bits_list:
            with Timer() as t_fit:
                model = fit(ft, n_bits, args.seed)
            with Timer() as t_enc:
                cq, cd = encode(model, fq), encode(model, fd)
            r = evaluate_codes(cq, cd, lq, ld, protocol)
            r.update(
                method=name, bits=n_bits, train_s=t_fit.seconds, encode_s=t_enc.seconds,
                query_s=time_binary_search(cd, cq, n_bits, k_search), model_bytes=model_bytes(model),
                index_bytes=int(cd.nbytes),
            )
            print(f"{name:5s} {n_bits:3d} bits  mAP {r['map']:.4f}  tie-aware {r['tie_aware_map']:.4f}  "
                  f"P@r2 {r['precision_at_radius']:.4f}  ({r['eval_s']:.1f} s)", flush=True)
            results.append(r)
    r = evaluate_features(fq, fd, lq, ld, protocol, metric="cosine")
    fdn = fd / np.linalg.norm(fd, axis=1, keepdims=True)
    fqn = fq / np.linalg.norm(fq, axis=1, keepdims=True)
    r.update(method="float kNN (cosine)", bits=None, train_s=None, encode_s=None,
             query_s=time_float_search(fdn, fqn, k_search), model_bytes=None, index_bytes=int(fd.astype(np.float32).nbytes))
    print(f"float kNN  mAP {r['map']:.4f}", flush=True)
    results.append(r)

    feature_words = (
        "EfficientNet-Lite0, ImageNet weights, frozen; global-average-pooled 1280-d; ONNX Runtime on CPU; "
        "32x32 images upscaled to 224 (bilinear), normalised (x - 127) / 128"
        if args.features == "lite0"
        else "RAW PIXELS downscaled to 16x16 (768-d) -- a sanity check of the machinery only, not a CNN feature"
    )
    config = {
        "title": f"CIFAR-10, {protocol.name}: LSH / PCAH / ITQ on frozen features",
        "note": "Unsupervised baselines on frozen features, no deep hashing network: this run demonstrates "
        "the evaluation; it is not a result for deephash's deep methods.",
        "protocol": protocol,
        "dataset": f"CIFAR-10 JPEGs from {root} ({len(ids)} images)",
        "features": feature_words,
        "feature_extraction_s": round(t_feat.seconds, 1),
        "methods": "LSH = sign of Gaussian random projections of mean-centred features; PCAH = sign of the top "
        "principal components; ITQ = PCA + 50 iterations of the ITQ rotation; all fitted on the training split; "
        "float kNN = exact cosine ranking of the features (the ceiling)",
        "seed": args.seed,
        "split_file": str(out / "split.json"),
        "split_sizes": split.sizes(),
        "query_time": f"FAISS exact search (IndexBinaryFlat / IndexFlatIP), top {k_search}, 1 thread, per query",
        "encode_time": "seconds to encode queries + database from cached features (the CNN time is feature_extraction_s)",
        "machine": f"{os.cpu_count()} visible CPU cores, shared",
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
    }
    paths = write_report(results, out, config)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
