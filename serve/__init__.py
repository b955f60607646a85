"""TrayLens service: FastAPI app over ONNX Runtime. Never imports torch."""
