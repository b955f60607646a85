"""Training library: typed config, data sources, losses, feature cache, checkpoints, loops.

model/train.py is the CLI over `model.training.run.run`; notebooks and tests import the
modules directly. Nothing is re-exported here, so `import model.training.config` stays
torch-free.
"""
