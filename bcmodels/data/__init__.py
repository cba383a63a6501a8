"""The BUSI data: its install, the image store, the splits and the subsets that training reads."""
