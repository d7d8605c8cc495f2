"""Training, evaluation, prediction and anchor search: the jobs built on the detector families."""
