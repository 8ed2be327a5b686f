"""The ray engine against a real local Ray cluster (2 workers, one for the whole module).

The reference is the single-process path (``engine="local"``: extract_features + the hasher on all
features); the ray engine must give the same codes, features, ids, order and failed-image report,
also when a run was killed half-way (it resumes from the shards on disk) and when a worker
process dies in the middle of a shard (Ray redoes the shard; nothing is indexed twice).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import ray_faults
from synthetic import make_archive

from deephash import api
from deephash.data import open_archive
from deephash.data.images import decode_image
from deephash.engines import create_engine
from deephash.engines.shards import ShardStore, plan_shards
from deephash.errors import ConfigError, DataError, EngineUnavailableError, UnknownNameError

BAD = {"train/cat/9990_corrupt.jpg": b"this is not a jpeg",
       "train/frog/9992_empty.jpg": b""}


@pytest.fixture(scope="module")
def archive_root(tmp_path_factory) -> Path:
    """130 synthetic JPEGs (13 per class) plus a corrupt, a truncated and an empty file."""
    root = make_archive(tmp_path_factory.mktemp("ray_archive") / "arch", {"train": 13}, seed=3)
    for rel, data in BAD.items():
        (root / rel).write_bytes(data)
    good = (root / "train/dog/0000.jpg").read_bytes()
    (root / "train/dog/9991_truncated.jpg").write_bytes(good[: len(good) // 2])
    return root


@pytest.fixture(scope="module")
def checkpoint(archive_root, tmp_path_factory) -> Path:
    """A 16-bit ITQ model trained on the archive's 32 px features."""
    from deephash.backbones import create_backbone
    from deephash.features import extract_features
    from deephash.hashers import create_hasher

    a = open_archive(archive_root)
    bb = create_backbone("efficientnet-lite0", image_size=32)
    fs = extract_features(a, bb, progress=False)
    h = create_hasher("itq", 16, seed=0)
    h.fit(fs.features)
    return Path(h.save(tmp_path_factory.mktemp("ray_model") / "itq-16.pt", backbone=bb.name,
                       preprocessing=bb.preprocessing.to_dict()))


@pytest.fixture(scope="module")
def model(checkpoint):
    from deephash.model import HashModel

    return HashModel.load(checkpoint)


@pytest.fixture(scope="module")
def local(archive_root, checkpoint, model):
    """The single-process reference, computed afresh (no feature cache)."""
    return create_engine("local", use_cache=False).encode(open_archive(archive_root), checkpoint, model, progress=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real local Ray cluster of 2 CPUs for the module; every worker it starts carries the dying-worker
    fault (tests/ray_faults.py), inert until a test creates its ``arm`` file."""
    import ray

    ray.cloudpickle.register_pickle_by_value(ray_faults)  # the workers cannot import tests/
    arm = tmp_path_factory.mktemp("ray_faults") / "kill-one-worker"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": ray_faults.dying_worker_hook(arm)})
    try:
        yield {"address": ray.get_runtime_context().gcs_address, "arm": arm}
    finally:
        ray.shutdown()


def same(a, b) -> None:
    """Identical encodings: codes, features, ids (hence order) and the failed-image report."""
    assert np.array_equal(a.ids, b.ids)
    assert np.array_equal(a.codes, b.codes)
    assert a.codes.dtype == b.codes.dtype == np.uint8
    assert np.array_equal(a.features, b.features)
    assert a.failed == b.failed


def test_local_reference_reports_the_bad_files(archive_root, local):
    """The reference itself: every good image encoded once, in archive order; the bad ones named with
    the reason decoding them gives (recomputed here one file at a time)."""
    a = open_archive(archive_root)
    bad = sorted(list(BAD) + ["train/dog/9991_truncated.jpg"], key=a.paths.index)
    want = []
    for rel in bad:
        with pytest.raises(DataError) as e:
            decode_image(a.abspath(a.paths.index(rel)))
        want.append((rel, str(e.value)))
    assert local.failed == want
    assert list(local.ids) == [i for i, p in enumerate(a.paths) if p not in BAD and not p.endswith("_truncated.jpg")]


def test_ray_engine_is_identical_to_local(cluster, archive_root, checkpoint, model, local, tmp_path):
    r = create_engine("ray", shard_size=10, run_dir=tmp_path).encode(open_archive(archive_root), checkpoint, model,
                                                                     progress=False)
    same(r, local)
    n_shards = len(plan_shards(len(open_archive(archive_root)), 10))
    assert (r.stats["shards"], r.stats["computed_shards"], r.stats["reused_shards"]) == (n_shards, n_shards, 0)
    assert len(list(Path(r.stats["run_dir"]).glob("shard-*.npz"))) == n_shards


def test_cli_index_with_ray_equals_local_index(cluster, archive_root, checkpoint, tmp_path):
    from deephash.cli.main import cli
    from deephash.index import HashIndex

    ref = api.build_index(archive_root, checkpoint, tmp_path / "local.dhi", progress=False)
    res = CliRunner().invoke(cli, ["index", str(archive_root), "--model", str(checkpoint), "--out",
                                   str(tmp_path / "ray.dhi"), "--engine", "ray", "--shard-size", "16"])
    assert res.exit_code == 0, res.output
    assert "(ray: 9 shards, 9 encoded, 0 reused" in res.output
    for rel, why in ref.skipped:  # the same failed-image report as the local path (the name said once)
        assert f"{rel}: {why.split(': ', 1)[1] if why.split(': ', 1)[0].endswith(rel) else why}" in res.output
    a, b = HashIndex.load(tmp_path / "local.dhi"), HashIndex.load(tmp_path / "ray.dhi")
    assert len(a) == len(b) == 130
    assert np.array_equal(a.ids, b.ids) and list(a.paths) == list(b.paths)
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.features, b.features)
    assert a.meta == b.meta


@pytest.mark.slow  # starts a second Ray cluster (~12 s of start-up alone)
def test_cli_without_address_starts_and_stops_a_local_cluster(archive_root, checkpoint, local, tmp_path):
    """`deephash index --engine ray` with no --address, in a process of its own: it starts a 2-worker
    local cluster, encodes, stops it and exits 0; the index holds the local path's codes."""
    from deephash.index import HashIndex

    env = dict(os.environ, DEEPHASH_CACHE=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, "-m", "deephash.cli.main", "index", str(archive_root), "--model", str(checkpoint),
                        "--out", str(tmp_path / "own.dhi"), "--engine", "ray", "--workers", "2", "--shard-size", "40"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "(ray: 4 shards, 4 encoded, 0 reused" in p.stdout
    idx = HashIndex.load(tmp_path / "own.dhi")
    assert np.array_equal(idx.ids, local.ids) and np.array_equal(idx.codes, local.codes)


def _contents(index):
    """Everything an index holds, by id, through the backend interface (a file or a Milvus collection alike)."""
    ids, paths = index.id_paths()
    order = np.argsort(ids)
    ids, paths = np.asarray(ids)[order], [paths[j] for j in order]
    view = index.snapshot()
    keys = np.asarray([view.key_of(int(i)) for i in ids])
    got_paths, labels = view.records_of(keys)
    assert list(got_paths) == paths
    return ids, paths, view.codes_of(keys), view.features_of(keys), list(labels)


@pytest.mark.parametrize("backend", ["file", "milvus"])
def test_update_with_ray_equals_update_with_local(backend, cluster, archive_root, checkpoint, tmp_path, request):
    """`deephash index --update --prune --engine ray` on an archive that gained 24 images (one of them
    corrupt) and lost 7 gives the index `--update --prune` (the local engine) gives: same ids, paths,
    codes, features, labels and the same skipped-file report; only the new images are encoded, in shards."""
    from deephash.cli.main import cli
    from deephash.index.backend import open_index

    arch = tmp_path / "arch"
    shutil.copytree(archive_root, arch)
    files = sorted(arch.glob("train/*/*.jpg"))
    held = sorted(set(files[::6]) | {arch / "train/cat/9990_corrupt.jpg"})  # out for the first build, back for the update
    assert len(held) == 24
    stash = tmp_path / "held"
    for f in held:
        (stash / f.relative_to(arch)).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(f, stash / f.relative_to(arch))
    if backend == "file":
        outs = [str(tmp_path / "local.dhi"), str(tmp_path / "ray.dhi")]
    else:
        from test_index_backends import milvus_uri

        base = milvus_uri(request.getfixturevalue("milvus_server"))
        outs = [f"{base}dh_upd_local_{os.getpid()}", f"{base}dh_upd_ray_{os.getpid()}"]

    def run(*args):
        return CliRunner().invoke(cli, list(map(str, args)))

    try:
        for out in outs:
            r = run("index", arch, "--model", checkpoint, "--out", out)
            assert r.exit_code == 0 and "indexed 107 images" in r.output, r.output
        for f in held:
            shutil.move(stash / f.relative_to(arch), f)
        gone = [f for f in sorted(arch.glob("train/*/*.jpg")) if f not in held and f.name[:4] != "9991"][::16]
        assert len(gone) == 7
        for f in gone:
            f.unlink()
        r_local = run("index", arch, "--model", checkpoint, "--out", outs[0], "--update", "--prune")
        r_ray = run("index", arch, "--model", checkpoint, "--out", outs[1], "--update", "--prune", "--engine", "ray",
                    "--shard-size", "5")
        for r, out in ((r_local, outs[0]), (r_ray, outs[1])):
            assert r.exit_code == 0, r.output
            assert f"updated {out}: added 23, removed 7; it holds 123 images" in r.output
        # only the files the index lacks are encoded: the 24 back, and the empty and truncated files that failed before
        assert "(ray: 6 shards, 6 encoded, 0 reused" in r_ray.output

        def report(out: str) -> list[str]:  # the skipped-file lines, without progress bars and the last line
            return [ln for ln in out.replace("\r", "\n").splitlines() if ln and "%|" not in ln and not ln.startswith("updated ")]

        assert any("9990_corrupt.jpg" in ln for ln in report(r_local.output))
        assert report(r_local.output) == report(r_ray.output)
        a, b = (_contents(open_index(out)) for out in outs)
        assert len(a[0]) == 123 and not any(str(f.relative_to(arch)) in a[1] for f in gone)
        for x, y in zip(a, b):
            assert (np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y)
    finally:
        if backend == "milvus":
            for out in outs:
                try:
                    open_index(out).drop()
                except Exception:  # noqa: BLE001  (a collection the test never made)
                    pass


KILLED_RUN = """
import os, signal, sys
from deephash.data import open_archive
from deephash.engines import create_engine
from deephash.model import HashModel

root, ckpt, address, run_dir = sys.argv[1:5]
done = []

def progress(n, total):  # SIGKILL this driver once two shards are on disk: no clean-up of any kind runs
    done.append(n)
    if len(done) == 2:
        os.kill(os.getpid(), signal.SIGKILL)

engine = create_engine("ray", address=address, shard_size=8, run_dir=run_dir)
engine.encode(open_archive(root), ckpt, HashModel.load(ckpt), progress=progress)
print("not killed")
"""


def test_killed_run_resumes_from_the_shards_written(cluster, archive_root, checkpoint, model, local, tmp_path):
    """A driver SIGKILLed after two shards: the rerun encodes only the other shards (plus one whose file
    is garbage), keeps the two files untouched and gives the local result."""
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(KILLED_RUN))
    runs = tmp_path / "runs"
    p = subprocess.run([sys.executable, str(script), str(archive_root), str(checkpoint), cluster["address"], str(runs)],
                       capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    a = open_archive(archive_root)
    n_shards = len(plan_shards(len(a), 8))
    store = ShardStore.for_run(a, model, 8, runs)
    written = sorted(store.folder.glob("shard-*.npz"))
    assert len(written) == 2
    kept = {f: f.stat().st_mtime_ns for f in written}
    # what a run killed in the middle of writing leaves: a temporary file, and (were a write not atomic) a bad one
    todo = [i for i in range(n_shards) if not store.has(i)]
    (store.folder / f".shard-{todo[0]:05d}.npz.x1y2.tmp.npz").write_bytes(b"half a shard")
    store.path(todo[1]).write_bytes(b"PK\x03\x04 not a whole zip")
    r = create_engine("ray", shard_size=8, run_dir=runs).encode(a, checkpoint, model, progress=False)
    assert (r.stats["reused_shards"], r.stats["computed_shards"]) == (2, n_shards - 2)
    assert {f: f.stat().st_mtime_ns for f in written} == kept
    same(r, local)


def test_worker_dying_mid_shard_is_redone_once(cluster, archive_root, checkpoint, model, local, tmp_path):
    arm = Path(cluster["arm"])
    arm.write_text("armed")
    try:
        r = create_engine("ray", shard_size=16, batch_size=8, run_dir=tmp_path).encode(
            open_archive(archive_root), checkpoint, model, progress=False)
    finally:
        arm.unlink(missing_ok=True)
    fired = Path(str(arm) + ".fired")
    assert fired.is_file(), "no worker died: the fault did not fire"
    dead_pid = int(fired.read_text())
    assert dead_pid != os.getpid()
    assert len(np.unique(r.ids)) == len(r.ids)  # nothing twice
    same(r, local)
    assert r.stats["computed_shards"] == r.stats["shards"]


def test_engine_options_are_checked():
    with pytest.raises(ConfigError, match="the local engine takes no option workers; it takes: batch_size, use_cache"):
        create_engine("local", workers=2)
    with pytest.raises(ConfigError, match="workers .* must be an integer of at least 1; got 0"):
        create_engine("ray", workers=0)
    with pytest.raises(ConfigError, match="shard_size .* at least 1; got -5"):
        create_engine("ray", shard_size=-5)
    with pytest.raises(UnknownNameError, match="unknown engine 'spark'; known engines: local, ray"):
        create_engine("spark")


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, archive_root, checkpoint, tmp_path):
    from deephash.cli.main import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    with pytest.raises(EngineUnavailableError, match=r"the ray engine needs ray, which is not installed: pip install 'deephash\[ray\]'"):
        create_engine("ray")
    res = CliRunner().invoke(cli, ["index", str(archive_root), "--model", str(checkpoint), "--out",
                                   str(tmp_path / "x.dhi"), "--engine", "ray"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the ray engine needs ray") and "pip install" in lines[0]
    assert not (tmp_path / "x.dhi").exists()


def test_the_cli_does_not_import_ray():
    code = "import sys, deephash.cli.main, deephash.engines; print('ray' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


def test_ray_encode_bench_reports_what_it_measured(cluster, archive_root, checkpoint, tmp_path):
    """The benchmark on the module's cluster (so no start-up of its own): both sides identical, figures
    consistent with the times they come from, the JSON written."""
    import json

    from deephash.bench.ray_bench import format_ray_encode_markdown, run_ray_encode_bench

    r = run_ray_encode_bench(str(archive_root), 40, workers=2, shard_size=10, model=str(checkpoint), repeats=2,
                             json_path=str(tmp_path / "b.json"), progress=False)
    assert r["identical"] is True and r["images"] == 40 and r["shards"] == 4 and len(r["runs"]) == 2
    for run in r["runs"]:  # seconds are rounded to 0.01 s, images/s to 0.1
        assert 40 / run["local_images_per_s"] == pytest.approx(run["local_s"], rel=0.01, abs=0.006)
        assert 40 / run["ray_images_per_s"] == pytest.approx(run["ray_s"], rel=0.01, abs=0.006)
    assert r["local"]["seconds"] == pytest.approx(float(np.median([x["local_s"] for x in r["runs"]])))
    assert json.loads((tmp_path / "b.json").read_text())["ray"] == r["ray"]
    assert "| ray, 2 workers, end to end |" in format_ray_encode_markdown(r)


def test_an_unreachable_cluster_is_one_clear_error():
    import socket

    from deephash.engines.ray_engine import check_reachable
    from deephash.errors import EngineError

    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        for addr in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
            with pytest.raises(EngineError, match=rf"cannot reach the Ray cluster at {addr}: .*expected a Ray head node"):
                check_reachable(addr)
