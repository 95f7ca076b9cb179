"""PAP-REC Studio core: automatic, personalized prompts for recommendation LMs."""

__version__ = "0.1.0"
