"""The tables by domain, all on serve.db.base.Base (migrations/env.py imports every module)."""
