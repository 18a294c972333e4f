"""The wheel test groups its tests on one xdist worker; declare the marker also when xdist is off (-p no:xdist)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker (pytest-xdist)")
