"""`python -m app.simulator`: run the simulated provider."""

from app.simulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
