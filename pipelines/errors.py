"""Exceptions raised by the data pipelines.

Both derive from built-in exceptions so callers that do not know this package can still
catch them generically (``except FileNotFoundError`` / ``except ValueError``).
"""


class DatasetNotFoundError(FileNotFoundError):
    """The data a pipeline needs is not on this machine.

    The message always names where it was looked for and how to obtain it. The pipelines
    never download anything themselves: on a machine without network access TFDS would
    spend minutes retrying before failing, so it is better to fail at once and say how to
    prepare the data elsewhere.
    """


class CorruptDatasetError(ValueError):
    """A data file exists but cannot be trusted: bad compression, wrong header, wrong size.

    The message always names the offending file.
    """
