"""The error type for problems a user can fix (bad input, unknown names, missing files).

The CLI turns a :class:`GeomerError` into one line on stderr and exit status 2; anything else is
a bug and keeps its traceback.
"""


class GeomerError(Exception):
    """A user-facing error: the message is one line naming the file (and frame or row)."""


class WriteError(GeomerError):
    """An output could not be written (disk full, no permission): never a clip's fault, so a
    dataset build stops at it instead of counting the clip as bad."""


def check_shape(
    value,
    expected: tuple[int | str, ...],
    what: str,
    *,
    error: type[Exception] = GeomerError,
    hint: str = "",
    sizes: dict[str, int] | None = None,
) -> dict[str, int]:
    """Check an array's or tensor's shape at the door; return the sizes of the named dimensions.

    ``expected`` has one entry per dimension: an int is that size, a name (``"B"``, ``"K"``) any
    size, and a name standing twice the same size each time (``("B", "K", "K")`` is a batch of
    square matrices). ``sizes`` carries names over from checks of other arrays (it is updated in
    place), so ``N`` can be the same in all of them. A mismatch raises ``error``
    (:class:`GeomerError` for data a user brought, ``ValueError`` for a contract a model breaks)
    with one line, ``"{what} must be [B, K, K], got [2, 3, 4]{hint}"`` (a name bound by an earlier
    check shows its size: ``[N=68, 2]``).

    Shapes:
        - value: anything with a ``.shape`` (numpy array, torch tensor)
        - returns: ``sizes`` (a new dict when None) with every named dimension's size
    """
    sizes = {} if sizes is None else sizes
    bound = dict(sizes)
    shape = tuple(int(size) for size in value.shape)
    fits = len(shape) == len(expected)
    for size, want in zip(shape, expected) if fits else ():
        fits = sizes.setdefault(want, size) == size if isinstance(want, str) else size == int(want)
        if not fits:
            break
    if not fits:
        wanted = ", ".join(f"{want}={bound[want]}" if want in bound else str(want) for want in expected)
        got = ", ".join(str(size) for size in shape)
        raise error(f"{what} must be [{wanted}], got [{got}]{hint}")
    return sizes
