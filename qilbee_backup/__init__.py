"""qilbee-backup engine: backup and disaster recovery for QilbeeDB.

Importable without Prefect: flows/ and tasks/ orchestrate, this package does the work.
"""

__version__ = "0.1.0"
