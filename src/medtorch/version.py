__version__ = "0.1.0"
BUNDLE_FORMAT_VERSION = 3  # 3: signal bundles store their feature names and window step (2026-12-01)
