"""The deploy checks that need running services share the integration fixtures."""

from tests.integration.conftest import bootstrap, stack

__all__ = ["bootstrap", "stack"]
