"""The package version and its release date, defined once: `pyproject.toml` reads the version from here
(`[tool.setuptools.dynamic]`)."""

__version__ = "0.1.0"
#: the day this version was released (ISO date): the card's citation year. Bump it with `__version__`.
__release_date__ = "2026-12-04"
