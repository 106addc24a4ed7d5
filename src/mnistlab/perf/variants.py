"""What the benchmark compares, by name: kept apart from the measuring code so that ``bench --help`` lists
the choices without loading torch."""

VARIANTS = ("textbook", "mnistlab", "bare")
ALL_VARIANTS = (*VARIANTS, "lightning")
RATIOS = (("mnistlab", "textbook"), ("mnistlab", "bare"), ("lightning", "bare"))
MODELS = ("cnn", "dnn")
