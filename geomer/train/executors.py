"""Where fold × seed tasks run: in-process, a local process pool, or Ray.

All three call :func:`geomer.train.fit.fit_fold` with the same :class:`FitContext`, which is sent
once per worker (pool initializer, ``ray.put``) rather than once per task, and every task writes
its own files, so the executor never changes the results (see ``fit``'s determinism note).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from concurrent.futures import as_completed
from contextlib import contextmanager, nullcontext

from geomer.errors import GeomerError
from geomer.train.fit import FitContext, FoldSummary, FoldTask, fit_fold, release_collated


def run_tasks(
    tasks: list[FoldTask], context: FitContext, *, progress: bool = True
) -> list[FoldSummary]:
    """Run ``tasks`` with the executor and job count of ``context.config``; summaries in task order."""
    if not tasks:
        return []
    config = context.config
    if config.executor == "ray":
        return run_ray(tasks, context, progress=progress)
    if config.jobs > 1 and len(tasks) > 1:
        return run_process_pool(tasks, context, jobs=config.jobs, progress=progress)
    return run_in_process(tasks, context, progress=progress)


def _bar(total: int, progress: bool, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not progress, desc=description, unit="fold", leave=False)


def run_in_process(tasks, context, *, progress=True) -> list[FoldSummary]:
    summaries = []
    try:
        with _bar(len(tasks), progress, "folds") as bar:
            for task in tasks:
                summaries.append(fit_fold(context, task))
                bar.update()
    finally:
        release_collated()  # the run's collated clips are not needed after it
    return summaries


_WORKER_CONTEXT: FitContext | None = None
# Imported once by the fork server, so that its workers start with them loaded.
_PRELOAD = ["torch", "torch_geometric", "geomer.models", "geomer.train.fit", "geomer.train.executors"]


def _init_worker(context_bytes: bytes) -> None:
    import pickle

    import torch

    global _WORKER_CONTEXT
    torch.set_num_threads(1)
    _WORKER_CONTEXT = pickle.loads(context_bytes)


def _fit_in_worker(task: FoldTask) -> FoldSummary:
    assert _WORKER_CONTEXT is not None, "worker was not initialised"
    return fit_fold(_WORKER_CONTEXT, task)


def run_process_pool(tasks, context, *, jobs: int, progress=True) -> list[FoldSummary]:
    """A pool of ``jobs`` processes, one thread each, fed with fold × seed tasks.

    Workers come from :func:`landmarks.pool.process_pool` (a fork server that imports torch, PyG
    and the engine once; workers die with the caller).
    """
    from landmarks.pool import process_pool

    worker_context = context
    if context.device != "cpu":
        worker_context = FitContext(**{**context.__dict__, "device": "cpu"})
    summaries: dict[int, FoldSummary] = {}
    with process_pool(
        min(jobs, len(tasks)),
        preload=_PRELOAD,
        initializer=_init_worker,
        # Plain pickle bytes: multiprocessing's own pickler would share every tensor through a
        # file descriptor, and a dataset's thousands of tensors exceed what a fork server passes.
        initargs=(pickle.dumps(worker_context, protocol=pickle.HIGHEST_PROTOCOL),),
    ) as pool, _bar(len(tasks), progress, f"folds ({jobs} processes)") as bar:
        futures = {pool.submit(_fit_in_worker, task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            summaries[futures[future]] = future.result()
            bar.update()
    return [summaries[i] for i in range(len(tasks))]


def run_ray(tasks, context, *, progress=True) -> list[FoldSummary]:
    """One Ray task per fold × seed (1 CPU each) on ``config.ray_address`` or a local Ray.

    A local Ray is started with ``jobs`` CPUs and shut down afterwards; a cluster given by
    address is only connected to.
    """
    config = context.config
    with ray_session(config):
        import ray

        worker_context = FitContext(**{**context.__dict__, "device": "cpu"})
        context_ref = ray.put(worker_context)
        remote_fit = ray.remote(num_cpus=1)(_fit_on_ray)
        pending = {remote_fit.remote(context_ref, task): i for i, task in enumerate(tasks)}
        summaries: dict[int, FoldSummary] = {}
        with _bar(len(tasks), progress, "folds (ray)") as bar:
            waiting = list(pending)
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for ref in done:
                    summaries[pending[ref]] = ray.get(ref)
                    bar.update()
        return [summaries[i] for i in range(len(tasks))]


def _fit_on_ray(context: FitContext, task: FoldTask) -> FoldSummary:
    import torch

    torch.set_num_threads(1)
    return fit_fold(context, task)


@contextmanager
def ray_session(config):
    """Connect to ``config.ray_address`` (or start a local Ray with ``config.jobs`` CPUs) for the
    duration of the block; a Ray already connected is used and left as it is. Entered before a
    run directory is written, so an unreachable cluster is refused with nothing written."""
    try:
        import ray
    except ImportError:
        raise GeomerError("--executor ray needs Ray: pip install 'geomer[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        _check_reachable(config.ray_address)
        options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            with _stderr_silenced():  # Ray's C++ client logs every failed connection attempt
                if config.ray_address:
                    ray.init(address=config.ray_address, **options)
                else:
                    ray.init(num_cpus=config.jobs, **options)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            where = config.ray_address or "a local Ray"
            raise GeomerError(f"--executor ray: cannot start or reach {where} ({first})") from None
        # ray.init replaces SIGTERM's handler with sys.exit; keep the caller's (geomer's CLI ends a
        # command on SIGTERM as on Ctrl-C: workers ended, finished folds kept)
        if sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """One-line GeomerError when ``address`` (``host:port`` or ``ray://host:port``) accepts no
    connection within ``timeout`` seconds. Why: ``ray.init`` retries an unreachable head node
    for minutes, silently (its messages are silenced), before it gives up. Other forms ("auto")
    are left to Ray."""
    import socket

    host, _, port = (address or "").removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    if int(port) > 65535:  # the socket layer's OverflowError would not say which part is wrong
        raise GeomerError(f"--executor ray: {address}: {port} is not a port number (0–65535)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise GeomerError(f"--executor ray: cannot reach {address} ({error.strerror or error})") from None


def executor_session(config):
    """The context a run's tasks execute in: :func:`ray_session` for ``--executor ray``, nothing
    otherwise."""
    return ray_session(config) if config.executor == "ray" else nullcontext()


@contextmanager
def _stderr_silenced():
    """Route file descriptor 2 to /dev/null for the block (native libraries write there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
