"""The data side: IDX files, the dataset registry, the DataModule, augmentation, people's own images."""
