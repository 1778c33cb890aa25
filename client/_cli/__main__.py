"""`python -m openrouter_video._cli`: the same as the `openrouter-video` console script."""

from . import main

if __name__ == "__main__":  # pragma: no cover
    main()
