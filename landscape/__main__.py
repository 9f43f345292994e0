"""``python -m landscape``: the ``landscape`` command (also under torchrun: ``torchrun ... -m landscape``)."""

from landscape.cli.main import main

if __name__ == "__main__":
    main()
