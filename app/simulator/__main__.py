"""`python -m app.simulator`: run the simulated provider."""

from app.simulator import main

if __name__ == "__main__":
    main()
