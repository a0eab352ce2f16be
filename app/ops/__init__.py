"""Operations: pools and scaling, the supervisor, DLQ tools, migrate and seed, deploy files, planning."""
