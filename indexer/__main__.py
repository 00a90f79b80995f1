"""``python -m indexer``: the same as the ``indexer`` command."""

from .cli import main

if __name__ == "__main__":
    main()
