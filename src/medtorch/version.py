__version__ = "0.1.0"
BUNDLE_FORMAT_VERSION = 4  # 3: signal bundles store their feature names and window step (2026-12-01); 4: scikit-learn models on signals read the hand-made features alone (2026-12-02)
