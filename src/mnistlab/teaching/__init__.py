"""The lesson book: lessons registered in order (basics, then MNIST), and what writes them."""

from . import basics, mnist_lessons  # noqa: F401 - registers the lessons, in this order
from .book import LESSONS, write

__all__ = ["LESSONS", "write"]
