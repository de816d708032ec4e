"""``python -m zebra_cli``: the ``zebra`` command without the console script (e.g. from a checkout)."""

from zebra_cli import main

if __name__ == "__main__":
    main()
