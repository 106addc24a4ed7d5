"""The measuring side: reference pipelines, runs in fresh processes, the machine a number came from."""
