"""Plain helpers the test modules share (functions taking arguments, constants).

Test modules import these, never each other or conftest: pytest imports every test
module under its own name, so ``from tests.test_x import f`` would run test_x a second
time under another name. Shared *state* (apps, registries, temp caches) lives in
conftest.py as fixtures.
"""
