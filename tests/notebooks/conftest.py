"""The service fixtures the notebook tests share with tests/serve (the model, real photos)."""
from tests.serve.conftest import loaded_model, photo_bytes

__all__ = ["loaded_model", "photo_bytes"]
