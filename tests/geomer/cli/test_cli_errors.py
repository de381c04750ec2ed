"""How the CLI words an operating-system error that reaches it."""

from __future__ import annotations

import errno

from geomer.cli import os_error_line


def test_an_os_error_naming_no_file_says_where_to_look():
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device")) == (
        "No space left on device (run with --debug to see where)")
    assert os_error_line(OSError(errno.ENOENT, "No such file or directory", "a.txt")) == (
        "a.txt: No such file or directory")
