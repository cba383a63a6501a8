"""The files that pass between stages, one module each with its reader and writer.

A stage imports the formats it reads and writes, never the stage that produced them.
"""
