import sys

from .cli import main

if __name__ == "__main__":  # the guard keeps a spawned training process from starting a GUI
    sys.exit(main())
