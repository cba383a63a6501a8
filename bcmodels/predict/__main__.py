"""`python -m bcmodels.predict`: the command, with the project's error policy."""

from bcmodels.errors import run_stage
from bcmodels.predict.command import main

run_stage(main)
