"""bearwatch: staged rollout of a fastai bear detector on park camera feeds.

This package is the application shell: settings, database, schema, CLI, logging and
metrics helpers. Importing it reads no environment and opens no connection.
"""

__version__ = "0.1.0"
