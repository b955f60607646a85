"""TrayLens model: data, network, training and export (torch), plus a torch-free runtime.

Importing this package must not import torch: serve/ uses `model.infer.runtime`.
"""
