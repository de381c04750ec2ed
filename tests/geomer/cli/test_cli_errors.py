"""How the CLI words an operating-system error that reaches it, and how it ends on a signal."""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest

import geomer.cli.models
from geomer.cli import main, os_error_line


def test_an_os_error_naming_no_file_says_where_to_look():
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device")) == (
        "No space left on device (run with --debug to see where)")
    assert os_error_line(OSError(errno.ENOENT, "No such file or directory", "a.txt")) == (
        "a.txt: No such file or directory")


def test_sigterm_turned_into_a_plain_interrupt_by_a_library_still_exits_143(monkeypatch, capsys):
    def run(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        except KeyboardInterrupt:  # what Ray's ray.wait raises in place of the handler's exception
            raise KeyboardInterrupt from None

    monkeypatch.setattr(geomer.cli.models, "run", run)
    assert main(["models"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == "geomer models: terminated"


def test_ctrl_c_while_the_commands_are_loaded_exits_130_with_one_line(monkeypatch, capsys):
    import geomer.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(geomer.cli, "build_parser", interrupted)
    assert main(["models"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["geomer: interrupted"]


@pytest.mark.parametrize("signum, status, word", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
def test_a_signal_that_lands_in_a_finaliser_is_not_lost(monkeypatch, capsys, signum, status, word):
    # Python runs a signal's handler at the next bytecode: inside a __del__ its KeyboardInterrupt
    # is dropped ("Exception ignored"), and the command would have run on to the end
    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signum)
            for _ in range(3):  # the handler runs here, inside the finaliser
                pass

    def run(args):
        Finalised()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return 0

    monkeypatch.setattr(geomer.cli.models, "run", run)
    assert main(["models"]) == status
    assert capsys.readouterr().err.strip().splitlines() == [f"geomer models: {word}"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command, buffered", [
    (["geomer", "models"], True), (["geomer", "models"], False), (["geomer", "--help"], True),
    (["landmarks", "--help"], True),
    # unbuffered, argparse itself would drop the error of a help it cannot print
    (["geomer", "--help"], False), (["geomer", "train", "--help"], False), (["landmarks", "--help"], False),
])
def test_standard_output_on_a_full_disk_is_one_line_naming_it(command, buffered):
    # buffered, the write fails only when the output is flushed: at exit, where Python would
    # print "Exception ignored" and exit with 120; unbuffered, in the print itself
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    program, *argv = command
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", f"{program}.cli", *argv], stdout=full, stderr=subprocess.PIPE,
                              text=True, env=env, timeout=120)
    where = "geomer models" if argv == ["models"] else program  # a parsing error names the program
    assert (done.returncode, done.stderr.splitlines()) == (
        2, [f"{where}: error: standard output: No space left on device"])


@pytest.mark.parametrize("command", [["geomer", "models"], ["geomer", "--help"], ["landmarks", "--help"]])
def test_a_closed_standard_output_is_one_line_naming_it(command):
    import subprocess
    import sys

    import shlex

    program, *argv = command
    # started with descriptor 1 closed, as the shell's `>&-` does: Python sets sys.stdout to None
    line = shlex.join([sys.executable, "-m", f"{program}.cli", *argv])
    done = subprocess.run(["bash", "-c", f"exec {line} >&-"], stderr=subprocess.PIPE, text=True, timeout=120)
    where = "geomer models" if argv == ["models"] else program
    assert (done.returncode, done.stderr.splitlines()) == (2, [f"{where}: error: standard output: the descriptor is closed"])


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_command_error_after_output_that_cannot_be_flushed_is_the_error_reported():
    import subprocess
    import sys

    program = (
        "import sys, geomer.cli, geomer.cli.models\n"
        "from geomer.errors import GeomerError\n"
        "def run(args):\n"
        "    print('a row')\n"
        "    raise GeomerError('x.csv: row 3: bad')\n"
        "geomer.cli.models.run = run\n"
        "sys.exit(geomer.cli.main(['models']))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", program], stdout=full, stderr=subprocess.PIPE, text=True,
                              env=env, timeout=120)
    assert (done.returncode, done.stderr.splitlines()) == (2, ["geomer models: error: x.csv: row 3: bad"])


@pytest.mark.parametrize("argv", [
    ["train", "--model", "dere-grl", "--out", ""],  # an unset shell variable: not the working directory
    ["ensemble", "runs/a", "runs/b", "--out", " "],
    ["plot", "runs/a", "-o", ""],
    ["predict", "clip", "--checkpoint", "model.pt", "-o", ""],  # not the default folder either
    ["prepare", "--dataset", "synth", "--root", "data", "--cache", ""],
    ["train", "--model", "dere-grl", "--epochs", "many"],  # argparse's own type errors too
])
def test_a_bad_option_value_is_one_line_exit_2_and_writes_nothing(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"geomer {argv[0]}: error: argument ")
    assert lines[0].endswith(f"(see geomer {argv[0]} --help)")
    assert not list(tmp_path.iterdir())
