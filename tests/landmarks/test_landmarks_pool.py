"""The one process-pool helper: workers die with their parent and see the caller's current state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from landmarks.pool import process_alive, process_pool

ROOT = Path(__file__).resolve().parents[2]


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(process_alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def test_workers_and_fork_server_die_when_the_parent_is_killed():
    script = textwrap.dedent(
        """
        import os, time
        from multiprocessing import forkserver
        from landmarks.pool import process_pool

        pool = process_pool(2)
        pids = {pool.submit(os.getpid).result() for _ in range(6)}
        pids.add(forkserver._forkserver._forkserver_pid)
        print(" ".join(map(str, pids)), flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) >= 2 and all(process_alive(pid) for pid in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _gone_within(pids, 10), f"left behind: {[p for p in pids if process_alive(p)]}"
    finally:
        parent.kill()
        parent.wait()


def _state(name: str) -> tuple[str | None, str]:
    return os.environ.get(name), os.getcwd()


def test_workers_see_the_callers_current_environment_and_folder(tmp_path, monkeypatch):
    # The fork server may have been started earlier, with another environment and folder.
    with process_pool(1) as pool:
        pool.submit(os.getpid).result()
    monkeypatch.setenv("GEOMER_POOL_PROBE", "now")
    monkeypatch.chdir(tmp_path)
    with process_pool(1) as pool:
        assert pool.submit(_state, "GEOMER_POOL_PROBE").result() == ("now", str(tmp_path))


def test_an_exception_in_the_pool_block_cancels_queued_tasks_and_ends_the_workers():
    with pytest.raises(KeyboardInterrupt):
        with process_pool(1) as pool:
            futures = [pool.submit(time.sleep, 1.0) for _ in range(8)]
            futures[0].result()  # the worker is running; 7 s of tasks are queued
            raised = time.monotonic()
            raise KeyboardInterrupt  # what Ctrl-C or SIGTERM raises in geomer's CLI
    assert time.monotonic() - raised < 3.0  # the block is left without running the queued tasks


def test_ctrl_c_while_the_fork_server_imports_its_preload_is_the_callers_alone(tmp_path):
    # Ctrl-C reaches the whole process group: the fork server (busy importing torch) printed a
    # KeyboardInterrupt traceback, and a worker asked for meanwhile one of its own
    (tmp_path / "slow_to_import.py").write_text("import time\ntime.sleep(3)\n")
    script = textwrap.dedent(
        """
        import sys, time
        from landmarks.pool import process_pool

        print("starting", flush=True)
        try:
            with process_pool(2, preload=["slow_to_import"]) as pool:
                pool.submit(time.sleep, 0).result()
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}, start_new_session=True,
    )
    try:
        assert parent.stdout.readline() == "starting\n"
        time.sleep(1.0)  # the fork server is importing
        os.killpg(parent.pid, signal.SIGINT)
        assert parent.wait(timeout=20) == 130
        time.sleep(4)  # whatever the fork server and a late worker would print comes by now
        parent.stdout.close()
        assert parent.stderr.read().strip().splitlines() == ["interrupted"]
    finally:
        parent.kill()
        parent.wait()


def test_a_fork_server_killed_while_it_imports_its_preload_is_a_broken_pool(tmp_path):
    # `kill -9` of the fork server (or the OOM killer) during its imports: the caller gets the
    # pool's own BrokenProcessPool, which the CLIs report in one line, not multiprocessing's EOFError
    (tmp_path / "slow_to_import.py").write_text(
        "import os, pathlib, time\n"
        "pathlib.Path(os.environ['FORK_SERVER_PID']).write_text(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    pid_file = tmp_path / "fork_server.pid"
    script = textwrap.dedent(
        """
        from concurrent.futures.process import BrokenProcessPool
        from landmarks.pool import process_pool

        try:
            with process_pool(1, preload=["slow_to_import"]) as pool:
                pool.submit(abs, -1).result()
        except BrokenProcessPool as error:
            print("broken:", error)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
             "FORK_SERVER_PID": str(pid_file)},
    )
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        out, err = parent.communicate(timeout=30)
        assert out == "broken: the fork server died while it started\n", err
        assert parent.returncode == 0
    finally:
        parent.kill()
        parent.wait()
