//! Configuration: TOML file, FERROCAST_* environment, flags; one struct per role.
