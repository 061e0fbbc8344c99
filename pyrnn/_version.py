"""pyrnn's version: the one place it is written. pyproject.toml reads it for the package
metadata, CMakeLists.txt compiles it into the extension (pyrnn._core.__version__)."""
__version__ = "0.1.0"
