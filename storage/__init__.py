"""Tables, engine, migrations and repositories; nothing outside this package writes SQL."""
