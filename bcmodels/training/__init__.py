"""The study's training recipe: augmentation, the step, the eager and CUDA-graph epochs, fit, train stage."""
