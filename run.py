"""Entry point: ``python run.py <command> ...`` (same as the ``streamfuse`` console script)."""
import sys

from streamfuse.cli import main

if __name__ == "__main__":
    sys.exit(main())
