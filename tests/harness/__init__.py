"""What tests share, so that no test module imports another: settings, the in-memory adapter,
a DevWebUI on a free port, database fixtures, and each platform's end-to-end environment.

Fixtures are registered in tests/conftest.py; helpers are imported from here by name.
"""
