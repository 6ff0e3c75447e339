"""The image's entrypoint: parse, run, exit with the code (see README "Exit codes")."""

import sys

from migrator.cli import main

if __name__ == "__main__":
    sys.exit(main())
