"""Files and the terminal: crash-safe writes, progress, HTTP fetching, archives and image decoding."""
