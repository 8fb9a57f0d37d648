"""Public datasets by name: where the official files are, their checksums, and a verified local copy.

>>> from medtorch.datasets import fetch, list_datasets
>>> path = fetch("pneumoniamnist", root="data", download=True)   # then: medtorch train --data PATH

Only the standard library is imported here; downloading loads ``urllib`` and ``rich`` on first use.
"""

from medtorch.datasets.medmnist import DatasetInfo, dataset_info, fetch, list_datasets

__all__ = ["DatasetInfo", "dataset_info", "fetch", "list_datasets"]
