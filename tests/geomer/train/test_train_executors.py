"""Executors change where folds run, never the results: process pool and Ray match in-process."""

from __future__ import annotations

import pytest
from train_tiny_model import make_graphs

from geomer.graph import FaceGraph
from geomer.train import TrainConfig, run_loso

CLASSES = ("a", "b", "c")


@pytest.fixture(scope="module")
def setup():
    face_graph = FaceGraph()
    # 96 graphs, several hundred tensors: more than multiprocessing could pass as descriptors.
    return face_graph, make_graphs(face_graph, subjects=4, per_class=8)


def _config(**changes):
    settings = dict(model="train-tiny", epochs=3, batch_size=8, seeds=(0, 1), progress=False,
                    augment="none")  # hand-made graphs are not in geomer's feature layout, which the mirror needs
    settings.update(changes)
    return TrainConfig(**settings)


def _fold_files(run):
    return {
        str(path.relative_to(run)): path.read_bytes()
        for path in sorted(run.glob("seed-*/*/*"))
        if path.suffix in (".csv", ".npy")
    }


@pytest.fixture(scope="module")
def in_process_run(setup, tmp_path_factory):
    face_graph, graphs = setup
    run = tmp_path_factory.mktemp("executors") / "in-process"
    run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    return run


@pytest.mark.slow
def test_process_pool_matches_in_process(setup, in_process_run, tmp_path):
    face_graph, graphs = setup
    result = run_loso(graphs, CLASSES, _config(jobs=2), tmp_path / "pool", face_graph=face_graph)
    assert len(result.trained) == 8
    assert _fold_files(tmp_path / "pool") == _fold_files(in_process_run)
    assert (tmp_path / "pool" / "metrics.json").read_bytes() == (in_process_run / "metrics.json").read_bytes()


@pytest.mark.slow
def test_ray_executor_matches_in_process(setup, in_process_run, tmp_path):
    pytest.importorskip("ray")
    face_graph, graphs = setup
    result = run_loso(
        graphs, CLASSES, _config(executor="ray", jobs=2), tmp_path / "ray", face_graph=face_graph
    )
    assert len(result.trained) == 8
    assert _fold_files(tmp_path / "ray") == _fold_files(in_process_run)
    assert (tmp_path / "ray" / "metrics.json").read_bytes() == (in_process_run / "metrics.json").read_bytes()


@pytest.mark.slow
def test_a_ray_session_keeps_the_callers_sigterm_handler():
    pytest.importorskip("ray")
    import signal

    from geomer.train.executors import ray_session

    def handler(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with ray_session(_config(executor="ray", jobs=1)):
            assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_unreachable_ray_address_is_one_line_at_once():
    # ray.init retries an unreachable head node for minutes, its messages silenced
    pytest.importorskip("ray")
    import socket
    import time

    from geomer.errors import GeomerError
    from geomer.train.executors import ray_session

    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(GeomerError, match=rf"--executor ray: cannot reach 127.0.0.1:{port} \("):
            with ray_session(_config(executor="ray", jobs=1, ray_address=f"127.0.0.1:{port}")):
                pass
    assert time.monotonic() - start < 30


def test_a_ray_address_with_an_impossible_port_says_so():
    pytest.importorskip("ray")
    from geomer.errors import GeomerError
    from geomer.train.executors import ray_session

    with pytest.raises(GeomerError, match=r"127.0.0.1:99999: 99999 is not a port number"):
        with ray_session(_config(executor="ray", jobs=1, ray_address="127.0.0.1:99999")):
            pass
