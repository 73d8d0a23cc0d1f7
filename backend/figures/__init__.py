"""Figure records and the pages rendered from them (``python -m backend figures``).

records.py: the record dataclass, read/write; machine.py: the machine fields; pages.py: templates ->
markdown pages; run.py: run a command into a record, write or check all pages.
"""
