"""Storage: schema, engine set-up, migrations and repository functions."""
