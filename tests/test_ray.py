"""restore --engine ray: a Ray head and two workers on 127.0.0.1, one worker killed mid-run.

Ray is a development requirement (requirements-dev.txt); without it these tests fail with the
install command rather than being skipped.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.cli, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent


def need_ray():
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as e:
        pytest.fail(f"Ray Data is not installed ({e}): pip install -r requirements-dev.txt", pytrace=False)


def make_photos(folder: Path, n: int, side: int = 32, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"set{i % 3}" / f"p{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def log_records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.fixture
def loopback_cluster(monkeypatch):
    """A Ray head (no CPUs: it only coordinates) and two 1-CPU worker nodes, all on 127.0.0.1."""
    need_ray()
    short = tempfile.mkdtemp(prefix="m3ray", dir="/tmp")  # Unix socket paths must stay short
    monkeypatch.setenv("RAY_TMPDIR", short)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                           "include_dashboard": False})
    workers = []
    try:
        workers = [cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
        yield cluster, workers
    finally:
        cluster.shutdown()
        shutil.rmtree(short, ignore_errors=True)


def test_ray_cluster_loses_a_worker_and_every_image_is_done_once(tmp_path, loopback_cluster):
    cluster, workers = loopback_cluster
    n = 240
    sources = make_photos(tmp_path / "in", n)
    out = tmp_path / "out"
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")  # the driver keeps 127.0.0.1 as given
    proc = subprocess.Popen([sys.executable, "-m", "m3unet", "restore", str(tmp_path / "in"), "-o", str(out),
                             "--mode", "single", "--engine", "ray", "--address", cluster.address, "--workers", "2"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while len(list(out.rglob("p*.png"))) < 40 and proc.poll() is None and time.time() - t0 < 600:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    killed_at = time.time()
    cluster.remove_node(workers[0], allow_graceful=False)  # SIGKILL: its raylet and its restorer die mid-batch
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "ray: 3 nodes at 127.0.0.1 with 2 CPUs; 2 workers x 1 threads" in stderr, stderr
    assert "were in flight on a lost worker; restoring them again" in stderr, stderr

    recs = log_records(out / "restore-log.jsonl")
    by_source = {}
    for r in recs:
        by_source.setdefault(r["source"], []).append(r)
    assert sorted(by_source) == sorted(str(p) for p in sources)
    assert all(len(v) == 1 for v in by_source.values())  # one record per image
    statuses = [v[0]["status"] for v in by_source.values()]
    assert set(statuses) <= {"ok", "skipped"}
    assert len({r["pid"] for r in recs if r["status"] == "ok"}) >= 2  # both workers restored images

    outputs = sorted(out.rglob("*.png"))
    assert len(outputs) == n and not [p for p in out.rglob("*") if p.name.endswith(".partial")]
    from m3unet.cli.batch import BatchRestorer, Job, Settings
    reference = BatchRestorer(Settings(mode="single", threads=1))
    lost = [r for r in recs if r["status"] == "skipped"]  # written by the lost worker before it died
    check = lost + [r for r in recs if r["status"] == "ok"][:10]
    for r in check:
        got = Image.open(r["output"])
        got.load()  # complete, not truncated
        ref_path = tmp_path / "ref" / Path(r["output"]).relative_to(out)
        rec = reference.process(Job(r["source"], str(ref_path)))
        assert rec["status"] == "ok", rec
        assert np.abs(np.asarray(got).astype(int) - np.asarray(Image.open(ref_path)).astype(int)).max() <= 1
    for r in lost:
        assert Path(r["output"]).stat().st_mtime < killed_at + 5


def test_ray_local_instance_by_default_resumes_like_the_local_engine(tmp_path):
    need_ray()
    sources = make_photos(tmp_path / "in", 6, seed=1)
    out = tmp_path / "out"
    local = subprocess.run([sys.executable, "-m", "m3unet", "restore", str(tmp_path / "in"), "-o", str(tmp_path / "local"),
                            "--mode", "single", "--threads", "1"], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert local.returncode == 0, local.stderr
    out.mkdir()
    (out / "set0").mkdir()
    keep = np.full((32, 32, 3), 7, np.uint8)
    Image.fromarray(keep).save(out / "set0" / "p000.png")  # an earlier result: kept
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    r = subprocess.run([sys.executable, "-m", "m3unet", "restore", str(tmp_path / "in"), "-o", str(out), "--mode",
                        "single", "--engine", "ray", "--workers", "1"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "ray: 1 nodes at 127.0.0.1" in r.stderr and "1 skipped" in r.stderr, r.stderr
    assert np.array_equal(np.asarray(Image.open(out / "set0" / "p000.png")), keep)
    for p in sources[1:]:
        rel = p.relative_to(tmp_path / "in")
        a, b = np.asarray(Image.open(out / rel)).astype(int), np.asarray(Image.open(tmp_path / "local" / rel)).astype(int)
        assert np.abs(a - b).max() <= 1, rel


def test_ray_is_optional_and_said_so(tmp_path):
    """Without Ray installed, --engine ray is one clear error (the pack itself does not need Ray)."""
    code = ("import sys; sys.modules['ray'] = None; from m3unet.cli.main import main; "
            f"sys.exit(main(['restore', {str(tmp_path)!r}, '-o', {str(tmp_path / 'out')!r}, '--engine', 'ray']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--engine ray needs Ray Data" in r.stderr and "pip install 'ray[data]'" in r.stderr
    req = (REPO / "requirements.txt").read_text().splitlines()
    assert not [line for line in req if line.strip().lower().startswith("ray")]  # not a dependency of the pack
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("ray") for d in project["dependencies"])
    assert any(d.startswith("ray[data]") for d in project["optional-dependencies"]["ray"])
    assert any(line.startswith("ray[data]") for line in (REPO / "requirements-dev.txt").read_text().splitlines())


def test_ray_ctrl_c_stops_with_a_summary_and_a_rerun_resumes(tmp_path):
    import signal
    need_ray()
    make_photos(tmp_path / "in", 60, side=64, seed=2)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "m3unet", "restore", str(tmp_path / "in"), "-o", str(out), "--mode", "single"]
    proc = subprocess.Popen(cmd + ["--engine", "ray", "--workers", "2"], cwd=REPO,
                            env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while len(list(out.rglob("p*.png"))) < 4 and proc.poll() is None and time.time() - t0 < 600:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    (summary,) = [line for line in stderr.splitlines() if line.startswith("stopped by Ctrl-C")]
    written = sorted(out.rglob("p*.png"))
    assert f"{len(written)} restored" in summary and "run the same command again to resume" in summary, summary
    for p in written:
        Image.open(p).load()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and f"{len(written)} skipped" in r.stderr, r.stderr
    assert len(list(out.rglob("p*.png"))) == 60


def test_a_worker_lost_while_a_pass_starts_sends_its_jobs_to_the_next_pass():
    """An actor that dies mid-pass (its node killed while the pass was scheduled) ends the pass quietly:
    its jobs stay for the next pass. An actor that fails in its creation task (the pack is not
    importable on a node) is a clear usage error."""
    need_ray()
    import dataclasses
    import types

    import ray.exceptions

    from m3unet.cli import ray_engine
    from m3unet.cli.batch import UsageError

    @dataclasses.dataclass
    class FakeSettings:
        mode: str = "single"

    class Pipeline:
        def __init__(self, error):
            self.error = error

        def map_batches(self, *a, **k):
            return self

        def iter_rows(self):
            raise self.error

    def fake_ray(error):
        data = types.SimpleNamespace(from_items=lambda items, **k: Pipeline(error),
                                     ActorPoolStrategy=lambda **k: None)
        return types.SimpleNamespace(data=data, exceptions=ray.exceptions)

    printed = []
    bar = types.SimpleNamespace(print=lambda line, err=False: printed.append(line))
    job = types.SimpleNamespace(source="a.png", output="out/a.png", comparison=None)
    remaining = {0: job}
    ray_engine._one_pass(fake_ray(ray.exceptions.ActorDiedError()), remaining, FakeSettings(), 2, 1, None, bar,
                         None, None, [])
    assert remaining == {0: job} and any("a worker was lost during the pass" in p for p in printed)
    creation = ray.exceptions.RayActorError(error_msg="The actor died because of an error raised in its creation "
                                                      "task: ModuleNotFoundError: No module named 'm3unet'")
    with pytest.raises(UsageError, match="is the pack installed"):
        ray_engine._one_pass(fake_ray(creation), remaining, FakeSettings(), 2, 1, None, bar, None, None, [])
