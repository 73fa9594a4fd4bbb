"""The one error convention of every ``kdsr-*`` tool.

Libraries raise typed errors whose message names the option or file and says what to do;
:func:`tool` turns them into one line ``prog: error: ...`` on stderr and an exit status:

==  =========================================================================
0   done (for folder tools: every input written or skipped as already done)
1   done, but some inputs failed (each named on its own line)
2   nothing done: a bad option, a missing or unusable input, or output folder
130 interrupted (Ctrl-C); what was finished stays, nothing partial is left
==  =========================================================================
"""
import functools
import sys

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class KDSRError(Exception):
    """A problem the user can fix; the message is one line naming what and how."""


class OptionError(KDSRError, ValueError):
    """An option or an input file is wrong; the message names it and says what to do."""


class MissingFileError(OptionError, FileNotFoundError):
    """A file named by an option does not exist."""


def check_known_keys(section, given, known):
    """Raise a ValueError naming ``section`` when ``given`` (a mapping) has keys not in ``known``."""
    unknown = set(given) - set(known)
    if unknown:
        raise ValueError(f'{section}: unknown key(s) {", ".join(sorted(unknown))}; known: {", ".join(known)}.')


def tool(prog):
    """Decorate a tool's ``main(argv=None) -> int``: :class:`KDSRError` becomes one line and
    exit status 2, Ctrl-C one line and 130; anything else keeps its traceback (a bug)."""

    def wrap(main):

        @functools.wraps(main)
        def run(argv=None):
            try:
                return main(argv) or EXIT_OK
            except KDSRError as err:
                print(f'{prog}: error: {err}', file=sys.stderr)
                return EXIT_USAGE
            except KeyboardInterrupt:
                print(f'{prog}: interrupted', file=sys.stderr)
                return EXIT_INTERRUPTED

        run.prog = prog
        return run

    return wrap
