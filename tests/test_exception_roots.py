"""One root exception per package: every exception class a package defines derives from that package's root."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

from events.errors import EventError
from infra.errors import InfraError
from projections.errors import ProjectionError
from services.audit.errors import AuditError
from services.cli.errors import CliError
from services.gateway.errors import GatewayError
from services.office.errors import OfficeError
from services.query.errors import QueryError
from services.report.errors import ReportError
from services.sealer.errors import SealerError
from services.web.errors import WebError

ROOTS: dict[str, type[Exception]] = {
    "events": EventError,
    "infra": InfraError,
    "projections": ProjectionError,
    "services.audit": AuditError,
    "services.cli": CliError,
    "services.gateway": GatewayError,
    "services.office": OfficeError,
    "services.query": QueryError,
    "services.report": ReportError,
    "services.sealer": SealerError,
    "services.web": WebError,
}


def modules(package: str) -> list[ModuleType]:
    """The package and every module under it (``__main__`` modules left out: importing one runs it)."""
    pkg = importlib.import_module(package)
    names = [
        m.name for m in pkgutil.walk_packages(pkg.__path__, f"{package}.") if not m.name.endswith("__main__")
    ]
    return [pkg, *(importlib.import_module(name) for name in names)]


def exceptions_defined_in(module: ModuleType) -> list[type[BaseException]]:
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__
    ]


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_every_exception_of_a_package_derives_from_its_root(package: str) -> None:
    root = ROOTS[package]
    found = [exc for module in modules(package) for exc in exceptions_defined_in(module)]
    assert root in found  # the root itself is defined in the package
    strays = [f"{exc.__module__}.{exc.__qualname__}" for exc in found if not issubclass(exc, root)]
    assert not strays, f"not derived from {root.__name__}: {strays}"


def test_services_define_exceptions_only_in_packages_with_a_root() -> None:
    """A module of ``services`` outside the packages above (client, broker, demo) must get a root first."""
    rooted = tuple(f"{p}." for p in ROOTS if p.startswith("services.")) + tuple(ROOTS)
    strays = [
        f"{module.__name__}.{exc.__qualname__}"
        for module in modules("services")
        if not module.__name__.startswith(rooted)
        for exc in exceptions_defined_in(module)
    ]
    assert not strays
