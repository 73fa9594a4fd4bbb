"""What ``kdsr-train`` and ``kdsr-test`` share around BasicSR's pipelines."""
import sys

from .dist import use_device_aware_init_dist
from .errors import OptionError
from .resume import use_device_aware_resume


def run_pipeline(prog, pipeline, root_path):
    """Run a BasicSR pipeline rooted at ``root_path``; an :class:`OptionError` becomes one line
    on stderr and exit status 2 (other errors keep their traceback)."""
    use_device_aware_init_dist()
    use_device_aware_resume()
    try:
        pipeline(root_path)
    except OptionError as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        sys.exit(2)
