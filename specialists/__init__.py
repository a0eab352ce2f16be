"""The bundled example specialists, one package each (billing/, technical/): the engine finds them
through SWITCHBOARD_SPECIALISTS (default `specialists`) like any team's own package."""

# The tenant the bundled examples' demo data belongs to (their seeds, the demo, the benchmarks).
DEMO_TENANT = "default"
