"""The one error type a user may see: a single line that names the problem and the fix."""


class AtlasgenError(Exception):
    """Bad input or an unusable environment; the CLI prints it as one line and exits 2."""

    exit_code = 2
