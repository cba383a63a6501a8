"""The networks, their weights, running them over images, and where they look (Grad-CAM)."""
