"""Dashboard helpers.

- ``paths``: where the demo data and backbone live (relative to the repository).
- ``views``: pure functions from store records to tables, HTML and numbers (tested without Streamlit).
- ``studies``: the paper's ablation studies as batches of configs.
- ``engine``: calls into ``paprec_core`` that need the model (per-user metrics).
- ``ui``: Streamlit glue shared by the pages (store, runner, caching, error guard, run picker).
- ``jobs``: background pretraining jobs.

Nothing here is imported by ``paprec_core``; ``views`` and ``studies`` import no Streamlit.
"""
