"""The one exception tree: every error chaos-upstream raises on purpose is defined in errors.py, and
the proxies' errors are re-exported where users import them."""

import importlib
import pkgutil

import chaos_upstream
from chaos_upstream import errors, proxies

NOT_IMPORTED = {"chaos_upstream.loadtest"}
"""Imports locust, whose gevent patches the standard library."""


def _subclasses(kind: type) -> set[type]:
    return {kind}.union(*(_subclasses(sub) for sub in kind.__subclasses__()))


def test_every_error_of_the_package_is_defined_in_errors_py():
    for module in pkgutil.walk_packages(chaos_upstream.__path__, "chaos_upstream."):
        if module.name not in NOT_IMPORTED:
            importlib.import_module(module.name)
    outside = {f"{kind.__module__}.{kind.__qualname__}" for kind in _subclasses(errors.ChaosUpstreamError)
               if kind.__module__ != errors.__name__}
    assert outside == set()


def test_the_proxies_errors_are_the_trees_and_exported_by_the_proxies_package():
    for name in ("ProxyError", "ProxyNotInstalled", "ProxyFailed", "PortTaken", "UnknownProxy"):
        assert getattr(proxies, name) is getattr(errors, name) and name in proxies.__all__
    assert issubclass(errors.PortTaken, errors.ProxyFailed) and issubclass(errors.ProxyFailed, errors.ProxyError)
    assert issubclass(errors.UnknownProxy, KeyError) and issubclass(errors.ProxyError, errors.ChaosUpstreamError)
