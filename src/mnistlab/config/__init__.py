"""The Hydra side: finding and composing configs, and what is refused before a run writes anything."""
