"""What is wrong with the data: exact and near copies, label conflicts, and leakage across a split."""
