"""`python -m edgenn` is the `edgenn` command (how `edgenn fit` starts its trials)."""

from .cli.main import main

if __name__ == "__main__":
    main()
