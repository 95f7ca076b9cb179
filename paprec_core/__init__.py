"""PAP-REC Studio core: automatic, personalized prompts for recommendation LMs.

Three layers; a module imports only from its own layer or the ones below it
(``tests/test_layers.py`` checks every import, lazy ones included):

- engine: ``data``, ``tokenizer``, ``backbone`` (with ``load_backbone``), ``prompts``,
  ``metrics``, ``ranking``, ``evaluate``, ``search/``, ``pretrain``, ``demo``;
- experiments: ``store``, ``runner``, ``compare``, ``layout_choice``, ``pack``,
  ``study`` (its options in ``study_options``) and ``report/``;
- interfaces: the CLI (``cli`` and the ``cli_*`` command modules) and ``dashboard/``.

Progress printing belongs to the interfaces: the runner and the study take a listener
from their caller (the CLI passes its progress bar, the dashboard reads the store).
"""

__version__ = "0.1.0"
