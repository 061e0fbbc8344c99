"""Built-in demos (``pyrnn demo``): generated tasks trained end to end on pyrnn's
kernels. ``reverse`` (default): an encoder-decoder with attention learns to reverse digit
strings; ``adding``: a Seq2Vec LSTM on the adding problem; ``sine``: synchronous Seq2Seq
next-value forecasting."""
from .run import TASKS, main, run_demo
from .tasks import adding_problem, digit_reversal, sine_waves

__all__ = ["TASKS", "main", "run_demo", "adding_problem", "digit_reversal", "sine_waves"]
