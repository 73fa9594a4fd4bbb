"""Errors that mean 'fix this option or file', shown by the entry points as one line."""


class OptionError(ValueError):
    """An option or an input file is wrong; the message names it and says what to do."""


class MissingFileError(OptionError, FileNotFoundError):
    """A file named by an option does not exist."""
