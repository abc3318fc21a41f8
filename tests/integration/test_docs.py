"""docs/configuration.md is generated from the option table; fail on drift."""
import os
import subprocess
import sys

from harness import OUTBOXD

here = os.path.dirname(os.path.abspath(__file__))
doc = os.path.join(here, "..", "..", "docs", "configuration.md")
generated = subprocess.run([OUTBOXD, "config-reference"], check=True,
                           capture_output=True, text=True).stdout
with open(doc) as f:
    if f.read() != generated:
        print("docs/configuration.md is out of date: run\n"
              "  build/outboxd config-reference > docs/configuration.md")
        sys.exit(1)
print("docs/configuration.md matches the option table")
