"""Lightning callbacks lmexp adds (conf/callbacks names them `lmexp.callbacks.<Class>`):
throughput and step times, text samples, the classification confusion matrix, the progress bar."""

from lmexp.callbacks.confusion import ConfusionMatrix
from lmexp.callbacks.progress import StepProgressBar
from lmexp.callbacks.samples import SampleText
from lmexp.callbacks.throughput import StepTimes, TokenThroughput

__all__ = ["ConfusionMatrix", "SampleText", "StepProgressBar", "StepTimes", "TokenThroughput"]
