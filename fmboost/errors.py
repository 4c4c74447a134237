"""What a user did wrong, as one type for every command: `fmboost` prints its message as one line on stderr and
exits 2 (cli/common.run). Anything else that escapes a command is a bug and keeps its traceback.

No imports: every layer, down to data/, raises these. The two subclasses are also the built-in errors they stand
for, so library callers that catch ValueError or FileNotFoundError keep working (serve words ValueErrors for the
page).
"""


class FmboostError(Exception):
    """A mistake in what the user asked for; the message is meant for them as it is, in one line."""


class InputError(FmboostError, ValueError):
    """A value, setting or file content the user gave that cannot be used."""


class MissingError(FmboostError, FileNotFoundError):
    """A file, folder or model the user named that is not there."""
