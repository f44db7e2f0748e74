"""Dataset folders, image reading, builders for public datasets and the embedded demo."""

from medattn.data.dataset import Dataset, dataset_hash, load_dataset, write_dataset
from medattn.data.io import read_image

__all__ = ["Dataset", "dataset_hash", "load_dataset", "read_image", "write_dataset"]
