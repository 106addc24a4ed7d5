"""The ground floor every other one stands on: the user's errors, files written whole, the run's log, figures."""
