"""A lazy stand-in for the `torch` module.

Importing torch costs about 2 s on a small CPU machine. Recipe validation, planning and
`mergesmith methods` never touch a tensor, so the method modules reach torch through this
proxy: the real import happens on the first attribute access (the first tensor operation).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule(ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._real: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._real is None:
            self._real = importlib.import_module(self.__name__)
        return self._real

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__") and attr != "__version__":
            raise AttributeError(attr)
        value = getattr(self._load(), attr)
        setattr(self, attr, value)  # cache: later lookups skip __getattr__
        return value


torch: Any = _LazyModule("torch")
