"""Local Tardis.dev-compatible server: synthetic or on-disk datasets for offline runs and tests."""

from .server import SampleServer, serve_forever

__all__ = ["SampleServer", "serve_forever"]
