"""`python -m medattn.jobs`: see `medattn.jobs.cli`."""

import logging
import os
import sys

from medattn.jobs.cli import main

code = main()
# Skip the interpreter's teardown: with torch loaded it took ~1 s after the job's last status
# was written, so a stopped worker outlived STOP_GRACE_S and was killed. Everything the job
# keeps is written (temporary + rename) and closed by now.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
