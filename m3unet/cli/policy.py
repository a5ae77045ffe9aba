"""``python -m m3unet policy``: the automatic restore's thresholds and rules, as a Markdown table."""
from __future__ import annotations

from pathlib import Path

from ..auto.policy import DEFAULT_POLICY

HEADER = """# The restore policy

Every threshold and rule of the automatic restore (`m3unet/auto/policy.py`): its value, what it
decides and where the value comes from. Regenerate with `python -m m3unet policy --md docs/policy.md`;
change one entry for a run with `--policy KEY=VALUE` on `restore` or `eval`. The validation
measurements behind the rules are in [rules.md](rules.md).

"""


def run(args) -> int:
    table = DEFAULT_POLICY.table()
    print(table)
    if args.md:
        Path(args.md).write_text(HEADER + table + "\n")
    return 0
