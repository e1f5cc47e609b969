# The real parts (router, worker, Docker clean-up) live in
# tests/support/infrastructure.py, loaded for the whole suite by the top-level
# conftest, so integration and browser tests share one router and one worker.
