"""The image's entrypoint: parse, run, exit with the code (see README "Exit codes")."""

from migrator.cli import run

if __name__ == "__main__":
    run()
