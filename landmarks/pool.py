"""The one process-pool helper: every parallel stage (here: landmark extraction; packages built on
``landmarks`` use it for theirs) gets its workers from :func:`process_pool`.

Three rules, all learnt the hard way:

- **Workers come from a fork server** (spawn where there is none). Forking the calling process
  itself is not safe once it runs OpenCV's, torch's or BLAS's thread pools: a lock held by one of
  their threads stays locked forever in the child. The fork server is a clean single-threaded
  process that imports ``preload`` once, so each worker still starts in a fraction of a second.
  Because the fork server was started earlier, each worker is given the caller's current
  environment variables, working folder and ``sys.path`` when it starts.
- **Ctrl-C is the caller's.** The fork server is started with SIGINT ignored, so a Ctrl-C while
  it imports ``preload`` (seconds, for torch) does not print its KeyboardInterrupt traceback (it
  ignores SIGINT itself only once the imports are done); its workers inherit that. The caller
  waits for those imports (a no-op process) before it makes the pool: a worker asked for during
  them would be born after an interrupted caller is gone and fail with a traceback. So the
  caller alone gets the KeyboardInterrupt, and ends its workers (:class:`_Pool`'s ``__exit__``).
- **Workers die with their parent.** On Linux each worker asks the kernel for SIGKILL when its
  parent (the fork server, which itself exits when the caller does) dies (``PR_SET_PDEATHSIG``
  through ``prctl``); everywhere, a watcher thread in each worker exits the worker when the calling
  process is gone. A ``kill -9`` of the caller leaves no worker behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

# How often a worker checks that the calling process still exists (seconds).
_WATCH_INTERVAL = 0.5
_PR_SET_PDEATHSIG = 1


def process_pool(
    jobs: int,
    *,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    preload: Sequence[str] = (),
) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``jobs`` workers following the module's rules.

    ``initializer(*initargs)`` runs once in each worker (a module-level function, since it is
    pickled); ``preload``: modules the fork server imports once, if this call starts it.
    """
    if jobs < 1:
        raise ValueError(f"a process pool needs at least 1 worker, got {jobs}")
    context = _context(preload)
    if context.get_start_method() == "forkserver":
        _start_fork_server(context)
    state = (os.getpid(), dict(os.environ), os.getcwd(), list(sys.path))
    return _Pool(
        max_workers=jobs,
        mp_context=context,
        initializer=_start_worker,
        initargs=(state, initializer, tuple(initargs)),
    )


class _Pool(ProcessPoolExecutor):
    """Leaving the ``with`` block on an exception (an error, Ctrl-C, SIGTERM) cancels the queued
    tasks and ends the workers at once; the executor's own exit would first run every submitted
    task, so ``kill`` of a ``--jobs 4`` run would wait for all its remaining folds."""

    def __exit__(self, kind, value, traceback):
        if kind is None:
            return super().__exit__(kind, value, traceback)
        workers = list((self._processes or {}).values())  # the executor keeps no public list
        self.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(timeout=5)
        return False


def _context(preload: Sequence[str]):
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    if preload:
        # Only takes effect if the fork server is not running yet (it starts once per process).
        context.set_forkserver_preload(list(preload))
    return context


def _start_fork_server(context) -> None:
    """Start the fork server (if it is not running) with SIGINT ignored, and wait until it has
    imported its preload modules (module docstring). An ignored signal stays ignored across
    ``exec``, and Python then leaves it so."""
    from multiprocessing import forkserver

    # signal() works in the main thread only, and a handler set outside Python (None) could not
    # be restored: then the fork server is started as it comes
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is threading.main_thread() and previous is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            forkserver.ensure_running()
        finally:
            signal.signal(signal.SIGINT, previous)
    else:
        forkserver.ensure_running()
    ready = context.Process(name="fork-server-ready")  # runs nothing: it is born once the imports are done
    try:
        ready.start()
    except (EOFError, ConnectionError) as error:  # the fork server died (killed, out of memory)
        raise BrokenProcessPool("the fork server died while it started") from error
    ready.join()


def _start_worker(state: tuple, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    parent, environ, cwd, path = state
    _die_with_parent(parent)
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    sys.path[:] = path
    if initializer is not None:
        initializer(*initargs)


def _die_with_parent(parent: int) -> None:
    """Arrange for this worker to end when process ``parent`` (the pool's owner) ends."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watcher below still covers it
    if not process_alive(parent):
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="watch-parent", daemon=True).start()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (killed, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            # "pid (name) state ...": the state follows the last ')'
            return stream.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _watch(parent: int) -> None:
    while process_alive(parent):
        time.sleep(_WATCH_INTERVAL)
    os._exit(1)

