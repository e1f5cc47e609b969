# One set of real parts (a Caddy of the tests' own, a Celery worker process,
# Docker clean-up) for every test that asks for them, unit to browser.
pytest_plugins = ["tests.support.infrastructure"]
