"""The Ray engine on a real local Ray cluster (head + a second node on 127.0.0.1): outputs identical
to the local engine's (with the checkpoint's own card, not the copy embedded in the weights), also
when a Ray worker process is SIGKILLed mid-video."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import mixed_inputs

from test_batch import ROOT, copy_checkpoint, tree

ray = pytest.importorskip("ray", reason="Ray is not installed (optional: pip install -r requirements-ray.txt)")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster
    # every node and the driver (a subprocess, inheriting this) on the loopback address only
    old = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                       "include_dashboard": False})
    c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    yield c
    c.shutdown()
    if old is None:
        os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    else:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = old


@pytest.fixture(scope="module")
def folder(tmp_path_factory, media):
    return mixed_inputs(tmp_path_factory.mktemp("rayin"), media, seconds=1.2)


ARGS = ["--detect-every", "2", "--workers", "2"]


@pytest.fixture(scope="module")
def carded_checkpoint(untrained_checkpoint, tmp_path_factory):
    """The untrained checkpoint with its card's class names edited: the sidecar card is the one in
    effect, so Ray workers must get it with the weights (the embedded copy has the old names)."""
    import json
    ckpt = copy_checkpoint(untrained_checkpoint, tmp_path_factory.mktemp("ckpt") / "c")
    card = ckpt.with_suffix(".json")
    data = json.loads(card.read_text())
    data["classes"] = [f"k{i}" for i in range(len(data["classes"]))]
    card.write_text(json.dumps(data))
    return ckpt


@pytest.fixture(scope="module")
def local_ref(folder, carded_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    r = subprocess.run([sys.executable, "-m", "batch", str(folder), "--out", str(out), "--checkpoint",
                        str(carded_checkpoint), *ARGS], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "p_k0" in (out / "b" / "single.mp4.frames.csv").read_text().splitlines()[0]
    return tree(out)


def ray_cmd(folder, out, ckpt, address):
    return [sys.executable, "-m", "batch", str(folder), "--out", str(out), "--checkpoint", str(ckpt),
            "--engine", "ray", "--address", address, *ARGS]


def task_pids() -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and (p / "cmdline").read_bytes().startswith(b"ray::VideoWorker.run"):
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


def test_ray_engine_matches_local(cluster, folder, local_ref, carded_checkpoint, tmp_path):
    r = subprocess.run(ray_cmd(folder, tmp_path / "o", carded_checkpoint, cluster.address), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr                    # c_zero.mp4 fails, the rest complete
    assert "FAILED c_zero.mp4: c_zero.mp4: empty file" in r.stderr
    got = tree(tmp_path / "o")
    assert sorted(got) == sorted(local_ref) and [k for k in got if got[k] != local_ref[k]] == []


def test_ray_worker_killed_mid_video_is_retried(cluster, folder, local_ref, carded_checkpoint, tmp_path):
    proc = subprocess.Popen(ray_cmd(folder, tmp_path / "o", carded_checkpoint, cluster.address), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.time() + 180, None
    while time.time() < deadline and proc.poll() is None and killed is None:
        pids = task_pids()
        if pids:
            time.sleep(1.0)  # let it get into the video
            if pids[0] in task_pids():
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
        time.sleep(0.1)
    _, err = proc.communicate(timeout=300)
    assert killed, "no Ray worker was seen analysing a video"
    assert proc.returncode == 1, err
    got = tree(tmp_path / "o")
    assert sorted(got) == sorted(local_ref) and [k for k in got if got[k] != local_ref[k]] == []
