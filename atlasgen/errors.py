"""The one error type a user may see: a single line that names the problem and the fix."""


class AtlasgenError(Exception):
    """Bad input or an unusable environment; the CLI prints it as one line and exits 2."""

    exit_code = 2


def first_line(exc: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message, cut to `limit` (its type's name when it says nothing)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
