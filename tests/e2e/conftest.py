import os

# Playwright's synchronous API runs an event loop in the test's thread; the
# test still talks to the database synchronously, which is safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
