"""Keep the exporters' and quantizers' chatter off stdout while they run."""
from __future__ import annotations

import contextlib
import logging
import sys


@contextlib.contextmanager
def quiet():
    """Keep the libraries' chatter off stdout (`--json` prints one document there and nothing else)."""
    import warnings

    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)
