__version__ = "0.1.0"
BUNDLE_FORMAT_VERSION = 2
